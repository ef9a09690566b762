package callstate

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// stampByDecoding is what stamp did before it spliced: decode the packet,
// set the nonce, encode it again. stamp must give the same packet.
func stampByDecoding(pkt []byte, epoch [8]byte, counter uint64) (*lkpb.DataPacket, uint32, bool) {
	var dp lkpb.DataPacket
	if err := proto.Unmarshal(pkt, &dp); err != nil {
		return nil, 0, false
	}
	if u := dp.GetUser(); u != nil {
		nonce := make([]byte, msgIDLen)
		copy(nonce, epoch[:])
		binary.BigEndian.PutUint64(nonce[8:], counter)
		u.Nonce = nonce
	}
	return &dp, dp.GetSequence(), true
}

func FuzzStamp(f *testing.F) {
	topic := "t"
	for _, p := range []*lkpb.DataPacket{
		{Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte("hello"), Topic: &topic}}, Sequence: 7},
		{Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: make([]byte, 300), Nonce: []byte("old nonce")}}, Sequence: 1 << 31, DestinationIdentities: []string{"a", "b"}},
		{Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{}}},
		{Value: &lkpb.DataPacket_RpcAck{RpcAck: &lkpb.RpcAck{RequestId: "r"}}, Sequence: 3},
		{Sequence: 9},
	} {
		b, err := proto.Marshal(p)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		r := &Room{msgEpoch: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, msgCounter: 41}
		want, wantSeq, ok := stampByDecoding(pkt, r.msgEpoch, 42)
		in := append([]byte(nil), pkt...)
		got, seq, err := r.stamp(pkt)
		require.True(t, bytes.Equal(in, pkt), "stamp changed its input")
		if !ok {
			return // not a packet our encoder makes; stamp may refuse it or not
		}
		require.NoError(t, err)
		require.Equal(t, wantSeq, seq)
		var dp lkpb.DataPacket
		require.NoError(t, proto.Unmarshal(got, &dp))
		require.True(t, proto.Equal(want, &dp), "stamped %x\nwant %v\ngot  %v", pkt, want, &dp)
		var aliased lkpb.DataPacket
		require.NoError(t, lkpb.UnmarshalDataPacketAliased(got, &aliased))
		if want.GetUser() != nil {
			require.Equal(t, want.GetUser().GetNonce(), aliased.GetUser().GetNonce())
		}
	})
}

// BenchmarkStamp measures giving a 1 KiB packet its message id.
func BenchmarkStamp(b *testing.B) {
	pkt, err := proto.Marshal(&lkpb.DataPacket{Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: make([]byte, 1024)}}, Sequence: 5})
	require.NoError(b, err)
	r := &Room{}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.stamp(pkt); err != nil {
			b.Fatal(err)
		}
	}
}
