package chunk

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReserveForwardedDestinations: with the reserve, a reliable message
// whose packet fits the limit only when its destinations are counted once
// goes as a stream, since the server's copy of them would push the
// forwarded packet over the limit; one that fits with them counted twice
// stays one packet. Without the reserve, both are one packet.
func TestReserveForwardedDestinations(t *testing.T) {
	const limit = 64000
	m := Message{Topic: "t", Destinations: []string{"bob", "carol", "dave"}, Reliable: true}
	n := limit
	for {
		m.Payload = payload(n, 3)
		if plainSize(m, 1) <= limit {
			break
		}
		n--
	}
	reserved := NewEncoder(Config{MaxReliablePacket: limit, ReserveForwardedDestinations: true})
	plain := NewEncoder(Config{MaxReliablePacket: limit})

	_, info := encodeAll(t, plain, m, counter())
	require.Equal(t, ViaPlain, info.Via)
	pkts, info := encodeAll(t, reserved, m, counter())
	require.Equal(t, ViaStream, info.Via)
	for _, p := range pkts {
		require.LessOrEqual(t, len(p), limit)
	}

	m.Payload = payload(n-destinationsSize(m.Destinations), 3)
	_, info = encodeAll(t, reserved, m, counter())
	require.Equal(t, ViaPlain, info.Via)
}
