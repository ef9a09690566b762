package callstate

import (
	"context"
	"net/http"
)

// WithRawHook returns o (a new JoinOptions when nil) with a hook that sees
// every signalling frame ("signal") and data channel message ("data")
// before it is decoded.
func WithRawHook(o *JoinOptions, f func(source string, b []byte)) *JoinOptions {
	if o == nil {
		o = &JoinOptions{}
	}
	o.rawHook = f
	return o
}

// WithSendFilter returns o (a new JoinOptions when nil) with a filter that
// sees, and may drop, every data packet before it is sent.
func WithSendFilter(o *JoinOptions, f func(reliable bool, pkt []byte) (keep bool)) *JoinOptions {
	if o == nil {
		o = &JoinOptions{}
	}
	o.sendFilter = f
	return o
}

// MaxLossyPacket returns the largest lossy packet the Room's encoder sends.
func (r *Room) MaxLossyPacket() int {
	p := r.LocalParticipant()
	return maxLossyPacket(p.Identity, p.SID)
}

// SendRawData lets tests send a hand-made DataPacket, as a hostile or
// foreign client would, on the reliable or lossy data channel.
func (r *Room) SendRawData(ctx context.Context, reliable bool, pkt []byte) error {
	return r.tr.Send(ctx, reliable, pkt)
}

// SinglePC reports whether the Room joined with one PeerConnection.
func (r *Room) SinglePC() bool { return r.tr.SinglePC() }

// MaxReliablePacket returns the largest reliable packet the Room sends as one
// packet.
func (r *Room) MaxReliablePacket() int {
	p := r.LocalParticipant()
	return maxReliablePacket(r.tr.MaxMessageSize(), r.opts.MaxReliablePacket, p.Identity, p.SID)
}

// WithDataTrackFilters returns o (a new JoinOptions when nil) with filters
// that see, and may drop, every data track packet sent and received; nil
// leaves a direction alone.
func WithDataTrackFilters(o *JoinOptions, send, recv func(pkt []byte) (keep bool)) *JoinOptions {
	if o == nil {
		o = &JoinOptions{}
	}
	o.dataTrackSendFilter, o.dataTrackRecvFilter = send, recv
	return o
}

// PublishDataTrackWithHandle publishes a data track with a chosen handle,
// as a client that picks a bad one would.
func (r *Room) PublishDataTrackWithHandle(ctx context.Context, name string, handle uint16) (*LocalDataTrack, error) {
	return r.publishDataTrack(ctx, name, handle, nil)
}

// HTTPClient returns the HTTP client the Room uses for its handshakes and
// server API calls.
func (r *Room) HTTPClient() *http.Client { return r.opts.HTTPClient }

// WithoutCapabilities returns o (a new JoinOptions when nil) joining with
// no ClientInfo capabilities, as a client that cannot inflate compressed
// data streams does.
func WithoutCapabilities(o *JoinOptions) *JoinOptions {
	if o == nil {
		o = &JoinOptions{}
	}
	o.withoutCapabilities = true
	return o
}
