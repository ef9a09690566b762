package callstate

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/chunk"
	"github.com/callstate/callstate/internal/lkpb"
)

// forwardAs returns pkt as LiveKit's server forwards it from the
// participant: identity and sid stamped in the packet and in the legacy
// fields of a UserPacket, into which it also copies the destinations.
func forwardAs(t *testing.T, pkt []byte, identity, sid string) []byte {
	t.Helper()
	var dp lkpb.DataPacket
	require.NoError(t, proto.Unmarshal(pkt, &dp))
	dp.ParticipantIdentity, dp.ParticipantSid = identity, sid
	dp.Kind = lkpb.DataPacket_LOSSY
	if u := dp.GetUser(); u != nil {
		u.ParticipantIdentity, u.ParticipantSid = identity, sid
		u.DestinationIdentities = dp.DestinationIdentities
	}
	b, err := proto.Marshal(&dp)
	require.NoError(t, err)
	return b
}

// TestLossyPacketsFitAsForwarded checks every lossy packet the Room's
// encoder makes, for long identities and several recipients, as sent and as
// the server forwards it.
func TestLossyPacketsFitAsForwarded(t *testing.T) {
	ids := func(n, length int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%d-%s", i, strings.Repeat("r", length))[:length]
		}
		return out
	}
	for _, identity := range []string{"a", strings.Repeat("s", 36), strings.Repeat("s", 120), strings.Repeat("s", 255)} {
		for _, dests := range [][]string{nil, ids(1, 36), ids(3, 120), ids(5, 128)} {
			t.Run(fmt.Sprintf("identity %d, %d recipients", len(identity), len(dests)), func(t *testing.T) {
				sid := "PA_" + strings.Repeat("x", 12)
				cfg := chunk.DefaultConfig()
				cfg.MaxLossyPacket = maxLossyPacket(identity, sid)
				e := chunk.NewEncoder(cfg)
				// Each destination takes room twice in a forwarded
				// packet. When the stamps and destinations leave no room
				// for a fragment, the message is refused, not sent too
				// large.
				overhead := MaxLossyPacketSize - cfg.MaxLossyPacket + 40
				for _, d := range dests {
					overhead += 2 * (len(d) + 2)
				}
				for _, n := range []int{1, 500, 1400, 20000} {
					biggest := 0
					_, err := e.Encode(chunk.Message{Topic: "t", Payload: make([]byte, n), Destinations: dests}, nil, func(pkt []byte) error {
						require.LessOrEqual(t, len(pkt), MaxLossyPacketSize, "as sent")
						fw := forwardAs(t, pkt, identity, sid)
						require.LessOrEqual(t, len(fw), MaxLossyPacketSize, "as forwarded")
						biggest = max(biggest, len(fw))
						return nil
					})
					if err != nil {
						var le *chunk.LimitError
						require.ErrorAs(t, err, &le)
						require.Zero(t, biggest, "nothing sent")
						require.Greater(t, overhead, MaxLossyPacketSize-100, "refused only when the destinations fill the packet")
						continue
					}
					require.NoError(t, err)
					if n == 20000 {
						require.Greater(t, biggest, MaxLossyPacketSize-40, "fragments use the room they have")
					}
				}
			})
		}
	}
}
