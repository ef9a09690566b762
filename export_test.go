package callstate

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
