package callstate

import "context"

// WithRawHook lets tests see every signalling frame ("signal") and data
// channel message ("data") before it is decoded.
func WithRawHook(f func(source string, b []byte)) Option {
	return func(o *options) { o.rawHook = f }
}

// WithSendFilter lets tests see, and drop, every data packet before it is
// sent.
func WithSendFilter(f func(reliable bool, pkt []byte) (keep bool)) Option {
	return func(o *options) { o.sendFilter = f }
}

// MaxLossyPacket returns the largest lossy packet the Room's encoder sends.
func (r *Room) MaxLossyPacket() int { return maxLossyPacket(r.local.Identity, r.local.SID) }

// SendRawData lets tests send a hand-made DataPacket, as a hostile or
// foreign client would, on the reliable or lossy data channel.
func (r *Room) SendRawData(ctx context.Context, reliable bool, pkt []byte) error {
	return r.tr.Send(ctx, reliable, pkt)
}
