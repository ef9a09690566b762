package chunk

import (
	"errors"
	"fmt"
	"time"
)

// Default limits. See Config for their meaning.
const (
	DefaultMaxLossyPacket      = 1400
	DefaultMaxReliablePacket   = 15000
	DefaultStreamChunkSize     = 15000
	DefaultMaxMessageSize      = 16 << 20
	DefaultMaxLossyPerSender   = 8
	DefaultMaxStreamsPerSender = 4
	DefaultMaxPartialTotal     = 256
	DefaultLossyTimeout        = 2 * time.Second
	DefaultStreamTimeout       = 30 * time.Second
)

// Config holds the limits of an Encoder or an Assembler. The zero value of a
// field (or a negative value) stands for its default; DefaultConfig returns
// every default.
type Config struct {
	// MaxLossyPacket is the largest encoded lossy DataPacket, in bytes.
	// Lossy messages whose packet would be larger are fragmented.
	MaxLossyPacket int
	// MaxReliablePacket is the largest encoded reliable DataPacket, in
	// bytes. Reliable messages whose packet would be larger are streamed.
	MaxReliablePacket int
	// ReserveForwardedDestinations makes a reliable message with
	// destinations go as one packet only if the packet would still fit
	// MaxReliablePacket with its destinations counted twice: LiveKit's
	// server copies them into the UserPacket it forwards (the legacy
	// destination_identities), so the packet arrives that much larger.
	// Set it when MaxReliablePacket is the receivers' hard limit (the
	// SCTP maximum message size) rather than a conservative size.
	ReserveForwardedDestinations bool
	// StreamChunkSize is the most content bytes in one stream chunk; a chunk
	// holds less when its packet would otherwise exceed MaxReliablePacket.
	StreamChunkSize int
	// MaxMessageSize is the largest message payload, in bytes, that the
	// Encoder sends and the Assembler accepts.
	MaxMessageSize int
	// MaxLossyPerSender is how many fragmented lossy messages one sender may
	// have under reassembly. When a sender starts one more, its least
	// recently active one is dropped.
	MaxLossyPerSender int
	// MaxStreamsPerSender is how many data streams one sender may have under
	// reassembly. Further streams of that sender are refused until one ends.
	MaxStreamsPerSender int
	// MaxPartialTotal is how many messages, of all senders, may be under
	// reassembly. Further messages are refused until one ends.
	MaxPartialTotal int
	// MaxBufferedPerSender is how many bytes the messages of one sender
	// under reassembly may hold. A data stream is charged the bytes of
	// content it has received, however they were cut into chunks (memory
	// in use stays within about 1.3 times that, plus a few kilobytes per
	// stream); a fragmented lossy message is charged the memory its
	// fragments take, their bytes plus 64 bytes of bookkeeping each.
	// Default: 2 × MaxMessageSize.
	MaxBufferedPerSender int
	// MaxBufferedTotal is how many bytes all messages under reassembly may
	// hold. Default: 8 × MaxMessageSize.
	MaxBufferedTotal int
	// LossyTimeout is how long a fragmented message waits for its next
	// fragment before it is dropped.
	LossyTimeout time.Duration
	// StreamTimeout is how long a data stream waits for its next packet
	// before it is dropped.
	StreamTimeout time.Duration
	// MaxDecompressedPerSender is how many bytes of decompressed stream
	// content, beyond the inflateFree bytes each compressed byte may
	// expand to, one sender may produce in 10 seconds: a budget that refills
	// linearly, from empty to full in 10 s. A few kilobytes of compressed
	// data can expand to MaxMessageSize; this bounds how much memory and
	// work one sender can make the receiver spend that way. A compressed
	// stream that would exceed it is refused and counted in RejectedLimit.
	// Default: 2 × MaxMessageSize.
	MaxDecompressedPerSender int
	// MaxDecompressedTotal is the same budget for all senders together.
	// Default: 8 × MaxMessageSize.
	MaxDecompressedTotal int
}

// DefaultConfig returns a Config with every default limit.
func DefaultConfig() Config {
	return Config{}.withDefaults()
}

// withDefaults returns c with every unset field set to its default.
func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxLossyPacket, DefaultMaxLossyPacket)
	def(&c.MaxReliablePacket, DefaultMaxReliablePacket)
	def(&c.StreamChunkSize, DefaultStreamChunkSize)
	def(&c.MaxMessageSize, DefaultMaxMessageSize)
	def(&c.MaxLossyPerSender, DefaultMaxLossyPerSender)
	def(&c.MaxStreamsPerSender, DefaultMaxStreamsPerSender)
	def(&c.MaxPartialTotal, DefaultMaxPartialTotal)
	def(&c.MaxBufferedPerSender, 2*c.MaxMessageSize)
	def(&c.MaxBufferedTotal, 8*c.MaxMessageSize)
	def(&c.MaxDecompressedPerSender, 2*c.MaxMessageSize)
	def(&c.MaxDecompressedTotal, 8*c.MaxMessageSize)
	if c.LossyTimeout <= 0 {
		c.LossyTimeout = DefaultLossyTimeout
	}
	if c.StreamTimeout <= 0 {
		c.StreamTimeout = DefaultStreamTimeout
	}
	return c
}

// LimitError reports a message that cannot be sent because it, or the
// packets it needs, exceed a limit. It carries what a callstate.SizeError
// carries.
type LimitError struct {
	// What names the value, for example "data message payload".
	What string
	// Size is the size of the value in bytes.
	Size int
	// Limit is the largest size allowed, in bytes.
	Limit int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("callstate: %s is %d bytes, over the limit of %d", e.What, e.Size, e.Limit)
}

// Errors returned by Encoder.Encode for messages that can never be sent.
var (
	// ErrReservedTopic is returned for a message on FragmentTopic.
	ErrReservedTopic = errors.New("callstate: topic " + FragmentTopic + " is reserved")
	// ErrLossyStream is returned for a lossy message with Stream set: data
	// streams need reliable delivery.
	ErrLossyStream = errors.New("callstate: a data stream cannot be lossy")
	// ErrInvalidString is returned for a topic, destination identity, MIME
	// type, name or attribute that is not valid UTF-8: protobuf strings
	// must be, and the server drops packets that break the rule.
	ErrInvalidString = errors.New("callstate: topic, destinations, MIME type, name and attributes must be valid UTF-8")
	// ErrInvalidText is returned for a text message to be streamed whose
	// payload is not valid UTF-8.
	ErrInvalidText = errors.New("callstate: text message is not valid UTF-8")
)
