package callstate_test

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
	"github.com/callstate/callstate/internal/lkpb"
)

// joinAgent joins room as an agent-kind participant, which LiveKit's
// server lets send text stream headers naming another participant.
func joinAgent(t *testing.T, srv *calltest.Server, room, identity string) *callstate.Room {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss":  srv.APIKey(),
		"sub":  identity,
		"nbf":  now.Add(-time.Minute).Unix(),
		"exp":  now.Add(time.Hour).Unix(),
		"kind": "agent",
		"video": map[string]any{
			"room": room, "roomJoin": true, "canPublish": true, "canSubscribe": true, "canPublishData": true,
		},
	}).SignedString([]byte(srv.APISecret()))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), calltest.JoinTimeout)
	defer cancel()
	r, err := callstate.Join(ctx, srv.URL(), tok, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// sendRaw sends hand-made DataPackets on the reliable channel.
func sendRaw(t *testing.T, r *callstate.Room, pkts ...*lkpb.DataPacket) {
	t.Helper()
	for _, p := range pkts {
		b, err := proto.Marshal(p)
		require.NoError(t, err)
		require.NoError(t, r.SendRawData(ctxT(t), true, b))
	}
}

func rawHeader(id, topic string, h *lkpb.DataStream_Header) *lkpb.DataPacket {
	h.StreamId, h.Topic = id, topic
	return &lkpb.DataPacket{Value: &lkpb.DataPacket_StreamHeader{StreamHeader: h}}
}

func rawChunk(id string, index uint64, content []byte) *lkpb.DataPacket {
	return &lkpb.DataPacket{Value: &lkpb.DataPacket_StreamChunk{StreamChunk: &lkpb.DataStream_Chunk{StreamId: id, ChunkIndex: index, Content: content}}}
}

func rawTrailer(id string) *lkpb.DataPacket {
	return &lkpb.DataPacket{Value: &lkpb.DataPacket_StreamTrailer{StreamTrailer: &lkpb.DataStream_Trailer{StreamId: id}}}
}

// sendMarker sends a reliable message on topic after everything r sent
// before, and waits until sub has it: the packets before it have been
// handled by then.
func sendMarker(t *testing.T, from *callstate.Room, sub *callstate.Subscription, topic string, seen func(callstate.DataReceived)) {
	t.Helper()
	require.NoError(t, from.PublishData(ctxT(t), []byte("marker"), &callstate.PublishOptions{Topic: topic}))
	calltest.Await(t, sub, func(e callstate.DataReceived) bool {
		if e.Data.Topic == topic {
			return true
		}
		if seen != nil {
			seen(e)
		}
		return false
	})
}

// forgeryWire records the stream headers that arrive naming alice.
type forgeryWire struct {
	mu     sync.Mutex
	forged int
}

func (w *forgeryWire) recv(source string, b []byte) {
	var dp lkpb.DataPacket
	if source == "data" && proto.Unmarshal(b, &dp) == nil && dp.GetStreamHeader() != nil && dp.GetParticipantIdentity() == "alice" {
		w.mu.Lock()
		w.forged++
		w.mu.Unlock()
	}
}

func TestForgedStreamSenderIsTheRealSender(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	alice := srv.Join(t, room, "alice", nil)
	var wire forgeryWire
	bob := srv.Join(t, room, "bob", callstate.WithRawHook(nil, wire.recv))
	agent := joinAgent(t, srv, room, "agent-1")
	sub := bob.Subscribe(nil)
	ctx := ctxT(t)
	_, err := bob.WaitForParticipant(ctx, "agent-1")
	require.NoError(t, err)

	// A text stream whose header names alice: the server passes the name
	// on, and bob attributes the stream to the agent all the same.
	generated := &lkpb.DataStream_Header_TextHeader{TextHeader: &lkpb.DataStream_TextHeader{Generated: true}}
	forged := rawHeader("forged-inline", "said", &lkpb.DataStream_Header{ContentHeader: generated, InlineContent: []byte("I am alice")})
	forged.ParticipantIdentity = "alice"
	sendRaw(t, agent, forged)
	e := calltest.Await(t, sub, func(e callstate.DataReceived) bool { return e.Data.Topic == "said" })
	assert.Equal(t, "agent-1", e.Data.From)
	assert.Equal(t, agent.LocalParticipant().SID, e.Data.FromSID)
	assert.Equal(t, "I am alice", string(e.Data.Payload))
	wire.mu.Lock()
	assert.Equal(t, 1, wire.forged, "the server forwarded the header naming alice")
	wire.mu.Unlock()

	// Unfinished headers naming alice, more than one sender may have, use
	// the agent's slots, not alice's: her own 40 KB message still arrives.
	for i := range 10 {
		h := rawHeader(fmt.Sprint("forged-", i), "spam", &lkpb.DataStream_Header{ContentHeader: generated})
		h.ParticipantIdentity = "alice"
		sendRaw(t, agent, h)
	}
	sendMarker(t, agent, sub, "agent-marker", nil)
	msg := randomBytes(40<<10, 7)
	require.NoError(t, alice.PublishData(ctx, msg, &callstate.PublishOptions{Topic: "big"}))
	got, err := calltest.AwaitEvent(ctx, sub, 10*time.Second, func(e callstate.DataReceived) bool { return e.Data.Topic == "big" })
	require.NoError(t, err, "alice's message arrives (receiver stats %+v)", bob.Stats().Data)
	assert.Equal(t, "alice", got.Data.From)
	assert.True(t, bytes.Equal(msg, got.Data.Payload))
}

func TestDecompressionIsBounded(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	const limit = 1 << 20
	bob := srv.Join(t, room, "bob", &callstate.JoinOptions{MaxMessageSize: limit})
	mallory := srv.Join(t, room, "mallory", nil)
	sub := bob.Subscribe(nil)

	// 20 streams of about 1 KB each that expand to the largest message.
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	require.NoError(t, err)
	_, _ = w.Write(make([]byte, limit))
	require.NoError(t, w.Close())
	for i := range 20 {
		sendRaw(t, mallory, rawHeader(fmt.Sprint("bomb-", i), "bomb", &lkpb.DataStream_Header{
			TotalLength: proto.Uint64(limit), Compression: lkpb.DataStream_DEFLATE_RAW, InlineContent: buf.Bytes(),
		}))
	}
	delivered := 0
	sendMarker(t, mallory, sub, "marker", func(e callstate.DataReceived) {
		if e.Data.Topic == "bomb" {
			require.Len(t, e.Data.Payload, limit)
			delivered++
		}
	})
	assert.Equal(t, 2, delivered, "one sender's decompressed output is bounded (2 × the message size per 10 s)")
	assert.EqualValues(t, 18, bob.Stats().Data.RejectedLimit, "the rest is refused and counted")
}

func TestInvalidUTF8TextStreamIsNotDelivered(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	bob := srv.Join(t, room, "bob", nil)
	mallory := srv.Join(t, room, "mallory", nil)
	sub := bob.Subscribe(nil)
	text := &lkpb.DataStream_Header_TextHeader{TextHeader: &lkpb.DataStream_TextHeader{}}
	for _, s := range []struct{ id, content string }{{"bad", "ok \xff\xfe!"}, {"good", "ok é!"}} {
		sendRaw(t, mallory,
			rawHeader(s.id, s.id, &lkpb.DataStream_Header{ContentHeader: text, TotalLength: proto.Uint64(uint64(len(s.content)))}),
			rawChunk(s.id, 0, []byte(s.content)),
			rawTrailer(s.id))
	}
	var topics []string
	sendMarker(t, mallory, sub, "marker", func(e callstate.DataReceived) { topics = append(topics, e.Data.Topic) })
	assert.Equal(t, []string{"good"}, topics, "only the valid text stream is delivered")
	assert.EqualValues(t, 1, bob.Stats().Data.RejectedMalformed)
}
