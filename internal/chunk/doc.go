// Package chunk turns application messages into LiveKit DataPackets and back.
//
// It is the packetization engine of callstate: an Encoder splits one message
// into the encoded DataPackets that go on a data channel, and an Assembler
// turns the DataPackets that arrive back into whole messages. The package has
// no WebRTC dependency; it speaks only the protobuf wire format of package
// lkpb.
//
// # Sending
//
// How a message travels depends on its delivery mode and size:
//
//   - A lossy message whose encoded DataPacket fits Config.MaxLossyPacket
//     (1400 bytes by default, so that the SCTP message fits one network
//     packet) goes as one plain UserPacket carrying the caller's topic, which
//     any LiveKit client understands.
//   - A larger lossy message is split into fragments. Each fragment is a
//     UserPacket on the reserved topic FragmentTopic, whose payload is a
//     fragment header followed by a slice of the message. Every encoded
//     fragment, destination identities and all, fits MaxLossyPacket as the
//     server forwards it (see below). Plain
//     LiveKit clients see packets on an unknown topic and never mistake a
//     fragment for a whole message.
//   - A reliable message whose encoded DataPacket fits
//     Config.MaxReliablePacket (15,000 bytes by default, under LiveKit's
//     16 KiB protocol limit) goes as one plain UserPacket.
//   - A larger reliable message, or one with Message.Stream set, goes as a
//     LiveKit data stream: a stream_header packet, stream_chunk packets and a
//     stream_trailer packet. livekit-client delivers it to the handler
//     registered with registerByteStreamHandler, or registerTextStreamHandler
//     for Message.Text.
//
// Reliable packets carry DataPacket.sequence from a counter the caller
// supplies; lossy packets carry none. DataPacket.kind is set, the
// participant identity is left for the server to fill, and destination
// identities are set on every packet of a message.
//
// LiveKit's server copies the destination identities of a packet holding a
// UserPacket into the UserPacket's legacy fields before forwarding it, so
// the Encoder sizes plain packets and fragments with that copy counted:
// with destinations they are sent smaller than the limits, by the size of
// the copy. The server also stamps the sender's identity and sid, twice;
// the caller accounts for those in the limits it sets (callstate subtracts
// them from MaxLossyPacket).
//
// The Encoder builds every packet with hand-written protobuf appends in a
// buffer it reuses, and hands it to the caller's emit function, which must
// send (or copy) it before returning. Sending a fragment allocates nothing.
//
// # The fragment format
//
// The payload of a UserPacket on FragmentTopic is, in order (integers are
// big-endian):
//
//	offset  size  field
//	0       1     version, 1
//	1       4     message id, unique per sender for a while (uint32)
//	5       4     total length of the message payload in bytes (uint32)
//	9       2     fragment index, from 0 (uint16)
//	11      2     fragment count, at least 1 (uint16)
//	13      2     fragment 0 only: length L of the message topic (uint16)
//	15      L     fragment 0 only: the message topic, UTF-8
//	...           the fragment's slice of the message payload
//
// The slices of fragments 0 to count-1, joined in index order, are the
// message payload. Every fragment carries at least one byte of it (so the
// count is at most the total length), except the single fragment of an
// empty payload. The topic must be valid UTF-8. Every fragment of a message
// repeats the same message id, total length and count. A receiver drops a
// fragment whose version it does not know, or that breaks these rules.
//
// # Receiving
//
// The Assembler accepts decoded DataPackets from both data channels. Plain
// user packets come back at once; fragments are held until all fragments of
// the message are in, then the message comes back whole; data streams (our
// own and those of other clients: byte and text streams, streams whose
// content is inline in the header, compressed streams, chunks of any size)
// come back whole when their trailer arrives. A message is never delivered
// in part: a lossy message with a fragment missing is dropped after
// Config.LossyTimeout, a stream with no packet for Config.StreamTimeout is
// dropped, and a stream whose trailer carries a reason is aborted.
//
// Senders are told apart by the participant sid the server stamps on every
// packet, never by a field the sender writes: the identity on a text stream
// header from a LiveKit agent may name someone else (the server allows it,
// for transcriptions), so such a stream is reassembled in the agent's slots
// and attributed to the agent (see Received.SenderIdentity).
//
// Memory is bounded whatever the senders do: claims of sizes over
// Config.MaxMessageSize or of inconsistent counts are refused, memory is
// taken only as bytes arrive, and the number of messages under reassembly
// and the bytes they hold are capped per sender and in total. Data streams
// are charged the bytes of content they hold, however they are cut into
// chunks (small chunks are copied together), so that no stream within the
// limits is refused. Compressed streams draw on a decompression budget per
// sender and in total (Config.MaxDecompressedPerSender), which refills over
// 10 seconds. A text stream that is not valid UTF-8 is refused. Every
// refusal is counted in Stats.
package chunk
