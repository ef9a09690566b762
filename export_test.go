package callstate

// WithRawHook lets tests see every signalling frame ("signal") and data
// channel message ("data") before it is decoded.
func WithRawHook(f func(source string, b []byte)) Option {
	return func(o *options) { o.rawHook = f }
}
