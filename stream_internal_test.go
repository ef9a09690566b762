package callstate

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// The recipient rule of compression, as livekit-client's
// allRecipientsSupportV2 and allRecipientsSupportCompression decide it.
func TestCompressionRecipientRule(t *testing.T) {
	info := func(identity string, protocol int32, caps ...lkpb.ClientInfo_Capability) Participant {
		return participantFromInfo(&lkpb.ParticipantInfo{Identity: identity, ClientProtocol: protocol, Capabilities: caps})
	}
	deflate := lkpb.ClientInfo_CAP_COMPRESSION_DEFLATE_RAW
	remotes := map[string]Participant{
		"both":     info("both", 2, lkpb.ClientInfo_CAP_PACKET_TRAILER, deflate),
		"both3":    info("both3", 3, deflate),
		"old":      info("old", 1, deflate), // the capability without data streams v2
		"nocap":    info("nocap", 2),        // v2 without the capability
		"trailers": info("trailers", 2, lkpb.ClientInfo_CAP_PACKET_TRAILER),
	}
	assert.True(t, remotes["both"].DeflateStreams)
	assert.False(t, remotes["trailers"].DeflateStreams)
	for _, c := range []struct {
		remotes map[string]Participant
		dests   []string
		want    bool
	}{
		{nil, nil, true}, // an empty room: nobody is left out
		{remotes, []string{"both"}, true},
		{remotes, []string{"both", "both3"}, true},
		{remotes, []string{"both", "old"}, false},
		{remotes, []string{"nocap"}, false},
		{remotes, []string{"trailers"}, false},
		{remotes, []string{"both", "gone"}, false}, // unknown: cannot be told
		{remotes, nil, false},                      // a broadcast reaches them all
		{map[string]Participant{"both": remotes["both"], "both3": remotes["both3"]}, nil, true},
	} {
		assert.Equal(t, c.want, everyRecipient(c.remotes, c.dests, canDeflate), "%v to %v", len(c.remotes), c.dests)
	}
	// Inline content needs v2 only.
	assert.True(t, everyRecipient(remotes, []string{"nocap"}, speaksV2))
	assert.False(t, everyRecipient(remotes, []string{"old"}, speaksV2))
}

// TestUnknownCompressionIsRefused: a stream whose header names a
// compression callstate does not know is refused, as malformed, by a
// handler's reader as by whole-message delivery (both read the header with
// chunk.CompressionOf), never handed over as if uncompressed.
func TestUnknownCompressionIsRefused(t *testing.T) {
	r := newOfflineRoom(t)
	handed := make(chan struct{}, 2)
	require.NoError(t, r.RegisterByteStreamHandler("bytes", func(*ByteStreamReader) { handed <- struct{}{} }))
	n := uint64(5)
	for _, h := range []*lkpb.DataStream_Header{
		{StreamId: "enum", Topic: "bytes", TotalLength: &n, Compression: lkpb.DataStream_CompressionType(7)},
		{StreamId: "attr", Topic: "bytes", TotalLength: &n, Attributes: map[string]string{"lk.compression": "zstd"}},
	} {
		h.ContentHeader = &lkpb.DataStream_Header_ByteHeader{ByteHeader: &lkpb.DataStream_ByteHeader{Name: "f"}}
		b, err := proto.Marshal(&lkpb.DataPacket{ParticipantIdentity: "peer", ParticipantSid: "PA_peer", Value: &lkpb.DataPacket_StreamHeader{StreamHeader: h}})
		require.NoError(t, err)
		r.onData(true, b)
	}
	assert.EqualValues(t, 2, r.Stats().Malformed)
	assert.Empty(t, handed)
	r.streams.mu.Lock()
	assert.Empty(t, r.streams.open)
	r.streams.mu.Unlock()
}
