package callstate

import "context"

// SendRawPacket sends an encoded data packet on the reliable channel as it
// is, for tests that speak parts of the protocol callstate does not send
// yet (RPC answers).
func (r *Room) SendRawPacket(ctx context.Context, pkt []byte) error {
	return r.tr.Send(ctx, true, pkt)
}
