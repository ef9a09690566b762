package chunk

// Stats is a snapshot of the counters of an Encoder (the send fields) or an
// Assembler (the receive fields). Add combines the two. Counters only grow;
// Partial and Buffered are current values.
type Stats struct {
	// PlainSent counts messages sent as one plain packet.
	PlainSent uint64
	// FragmentedSent counts lossy messages sent as fragments.
	FragmentedSent uint64
	// FragmentsSent counts the fragments of those messages.
	FragmentsSent uint64
	// StreamsSent counts messages sent as whole data streams.
	StreamsSent uint64
	// ChunksSent counts the stream chunks sent.
	ChunksSent uint64
	// PacketsSent counts all packets handed to emit.
	PacketsSent uint64
	// BytesSent is the total size of those packets.
	BytesSent uint64

	// PlainReceived counts plain user packets delivered.
	PlainReceived uint64
	// FragmentsReceived counts fragments received, including duplicates
	// and rejected ones.
	FragmentsReceived uint64
	// MessagesReassembled counts messages delivered whole from fragments.
	MessagesReassembled uint64
	// ChunksReceived counts stream chunks received, including duplicates
	// and rejected ones.
	ChunksReceived uint64
	// StreamsReceived counts data streams delivered whole.
	StreamsReceived uint64
	// CompressedReceived counts the data streams delivered whole whose
	// content travelled compressed (gzip or raw deflate).
	CompressedReceived uint64
	// StreamsAborted counts data streams whose sender ended them with a
	// reason (an error or an interruption).
	StreamsAborted uint64
	// DroppedIncomplete counts messages under reassembly that were dropped
	// unfinished: timed out, evicted by a newer lossy message of the same
	// sender, or forgotten with their sender.
	DroppedIncomplete uint64
	// RejectedMalformed counts packets and messages refused as malformed or
	// inconsistent: bad fragment headers, fragments or chunks that
	// contradict their message, streams whose length does not match their
	// header, undecodable compressed streams, text streams that are not
	// valid UTF-8.
	RejectedMalformed uint64
	// RejectedLimit counts packets and messages refused by a limit: sizes
	// over MaxMessageSize, messages refused because their sender or all
	// senders had too many messages or bytes under reassembly, and
	// compressed streams over the decompression budgets.
	RejectedLimit uint64
	// Duplicates counts fragments, chunks and stream headers received again.
	Duplicates uint64
	// Ignored counts packets that carry no message this package handles
	// (other value kinds, empty packets) and packets of streams or messages
	// already dropped or unknown.
	Ignored uint64
	// BytesReceived is the total payload size of the messages delivered.
	BytesReceived uint64

	// Partial is the number of messages under reassembly.
	Partial int
	// Buffered is the number of bytes held by messages under reassembly.
	Buffered int
}

// Add returns the field-by-field sum of s and o.
func (s Stats) Add(o Stats) Stats {
	s.PlainSent += o.PlainSent
	s.FragmentedSent += o.FragmentedSent
	s.FragmentsSent += o.FragmentsSent
	s.StreamsSent += o.StreamsSent
	s.ChunksSent += o.ChunksSent
	s.PacketsSent += o.PacketsSent
	s.BytesSent += o.BytesSent
	s.PlainReceived += o.PlainReceived
	s.FragmentsReceived += o.FragmentsReceived
	s.MessagesReassembled += o.MessagesReassembled
	s.ChunksReceived += o.ChunksReceived
	s.StreamsReceived += o.StreamsReceived
	s.CompressedReceived += o.CompressedReceived
	s.StreamsAborted += o.StreamsAborted
	s.DroppedIncomplete += o.DroppedIncomplete
	s.RejectedMalformed += o.RejectedMalformed
	s.RejectedLimit += o.RejectedLimit
	s.Duplicates += o.Duplicates
	s.Ignored += o.Ignored
	s.BytesReceived += o.BytesReceived
	s.Partial += o.Partial
	s.Buffered += o.Buffered
	return s
}
