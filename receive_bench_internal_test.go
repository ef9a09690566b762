package callstate

import (
	"bytes"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// BenchmarkReceiveData measures the receive path from a data channel
// message to a DataReceived event, as pion hands messages over: a buffer of
// its own per message, which the Room may keep.
func BenchmarkReceiveData(b *testing.B) {
	for _, n := range []int{1 << 10, 15 << 10, 60000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			r := newOfflineRoom(b)
			sub := r.Subscribe(nil)
			defer sub.Close()
			pkt, err := proto.Marshal(&lkpb.DataPacket{
				Kind:                lkpb.DataPacket_LOSSY,
				ParticipantIdentity: "alice",
				ParticipantSid:      "PA_alice",
				Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{
					ParticipantIdentity: "alice",
					ParticipantSid:      "PA_alice",
					Payload:             bytes.Repeat([]byte{1}, n),
				}},
			})
			if err != nil {
				b.Fatal(err)
			}
			msgs := make([][]byte, 64)
			for i := range msgs {
				msgs[i] = bytes.Clone(pkt)
			}
			b.ReportAllocs()
			b.SetBytes(int64(n))
			i := 0
			for b.Loop() {
				// pion allocates each message's buffer; that allocation is
				// not the Room's and is left out of the figures.
				r.onData(false, msgs[i%len(msgs)])
				i++
				<-sub.Events()
			}
		})
	}
}
