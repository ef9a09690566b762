package callstate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// StreamInfo describes a LiveKit data stream (livekit-client's sendText,
// sendFile and stream writers, callstate's SendText, SendBytes, SendFile
// and stream writers, and callstate's own large reliable messages).
type StreamInfo struct {
	// ID is the stream's id.
	ID string
	// Topic is the stream's topic.
	Topic string
	// MimeType is the stream's MIME type.
	MimeType string
	// Name is the name of a byte stream (a file name, for example).
	Name string
	// Text is true for a text stream.
	Text bool
	// Attributes are the stream's attributes.
	Attributes map[string]string
	// Size is the stream's length in bytes, -1 when the sender did not say
	// (a stream writer's).
	Size int64
	// Timestamp is when the sender started the stream, by its clock; zero
	// when unknown.
	Timestamp time.Time
	// Compressed is true when the content travels compressed (raw deflate,
	// or gzip from older clients); Size and what readers read are the
	// content before compression all the same.
	Compressed bool
}

// StreamOptions configures a data stream sent with SendText, SendBytes,
// SendFile, StreamText or StreamBytes; nil sends to everyone else in the
// room, without a topic.
type StreamOptions struct {
	// Topic is the stream's topic, which selects the receiver's handler
	// (livekit-client's registerTextStreamHandler and
	// registerByteStreamHandler). Topics starting with "lk." are LiveKit's
	// and refused, except lk.chat (prefer SendChatMessage).
	Topic string
	// To addresses the stream to the participants with these identities
	// only; empty means everyone else. As for PublishOptions.To, they must
	// be in the room.
	To []string
	// Attributes are the stream's attributes.
	Attributes map[string]string
	// Name is a byte stream's name; SendFile's default is the file's base
	// name. Text streams have none.
	Name string
	// MimeType is the stream's MIME type. Default: "text/plain" for text,
	// the type of the file's extension for SendFile,
	// "application/octet-stream" otherwise.
	MimeType string
	// Size, for StreamBytes and StreamText, announces the stream's length
	// in bytes to the receivers; the writer then refuses to write more or
	// to close with less. Zero means unknown. The one-shot sends set it
	// themselves.
	Size int64
	// OnProgress, if set, is called after each chunk is handed to the
	// transport with the bytes sent so far and the stream's size (-1 when
	// unknown). Both count the content as given, before any compression.
	// It runs on the sending goroutine and should return quickly.
	OnProgress func(sent, total int64)
	// NoCompression sends the content as it is. By default SendText,
	// SendBytes and SendFile compress non-empty content with raw deflate,
	// as livekit-client's sendText, sendBytes and sendFile do, when every
	// recipient (those of To, or everyone else in the room; an empty room
	// counts as able) speaks client protocol 2 and advertises
	// Participant.DeflateStreams. A stream that fits one packet carries
	// the compressed form only when it is smaller; a longer one is
	// compressed whole, as one raw deflate stream cut into chunks. The
	// header's size is the content's size before compression either way.
	// StreamText and StreamBytes never compress (neither does
	// livekit-client's stream writer): each write must reach the
	// receivers as it is made, and a deflate stream flushed at every write
	// gains little.
	NoCompression bool
}

// Errors of data streams.
var (
	// ErrStreamAborted is returned by a stream reader whose sender ended
	// the stream with a reason (livekit-client's writer abort, callstate's
	// CloseWithError) or left the room before the stream ended; the error
	// says the reason.
	ErrStreamAborted = errors.New("callstate: data stream aborted")
	// ErrStreamTooSlow is returned by a stream reader whose buffer stayed
	// full (StreamBufferSize) for StreamStallLimit: the stream was ended
	// for that reader so as not to hold up the rest of the Room's data.
	ErrStreamTooSlow = errors.New("callstate: data stream reader too slow")
	// ErrStreamIncomplete is returned by a stream reader when the stream
	// ended without as many bytes as its header announced, or was idle
	// for StreamIdleTimeout.
	ErrStreamIncomplete = errors.New("callstate: data stream incomplete")
)

// checkStreamTopic refuses topics that are LiveKit's own.
func checkStreamTopic(op, topic string) error {
	if topic != ChatTopic && strings.HasPrefix(topic, "lk.") {
		return fmt.Errorf("%w: %s: topic %q is reserved by LiveKit", ErrInvalidArgument, op, topic)
	}
	if isReservedTopic(topic) {
		return fmt.Errorf("%w: %s: topic %q is reserved by callstate", ErrInvalidArgument, op, topic)
	}
	return nil
}

// SendText sends text as a LiveKit text stream (livekit-client receives it
// with registerTextStreamHandler), as opts says, and returns the stream's
// description. Text of any length up to the Room's maximum message size is
// sent; longer text should go through StreamText. When every recipient
// understands it (client protocol 2) and the text fits one packet, it
// travels inside the stream's header. The text is compressed when every
// recipient can inflate it (see StreamOptions.NoCompression). It returns
// once the whole text is handed to the transport; ctx bounds the wait.
func (r *Room) SendText(ctx context.Context, text string, opts *StreamOptions) (StreamInfo, error) {
	if len(text) > r.opts.MaxMessageSize {
		return StreamInfo{}, &SizeError{What: "text stream", Size: len(text), Limit: r.opts.MaxMessageSize}
	}
	return r.sendWhole(ctx, "SendText", true, []byte(text), opts)
}

// SendBytes sends data as a LiveKit byte stream (livekit-client receives
// it with registerByteStreamHandler), as opts says; see SendText.
func (r *Room) SendBytes(ctx context.Context, data []byte, opts *StreamOptions) (StreamInfo, error) {
	if len(data) > r.opts.MaxMessageSize {
		return StreamInfo{}, &SizeError{What: "byte stream", Size: len(data), Limit: r.opts.MaxMessageSize}
	}
	return r.sendWhole(ctx, "SendBytes", false, data, opts)
}

func (r *Room) sendWhole(ctx context.Context, op string, text bool, data []byte, opts *StreamOptions) (StreamInfo, error) {
	o := streamOptions(opts)
	o.Size = int64(len(data))
	w, err := r.openStream(ctx, op, text, o, data, true)
	if err != nil {
		return StreamInfo{}, err
	}
	if w.inlined {
		return w.Info(), nil
	}
	if _, err := w.Write(data); err != nil {
		_ = w.CloseWithError(err)
		return w.Info(), err
	}
	err = w.Close() // before Info, which Close completes
	return w.Info(), err
}

// SendFile sends the file at path as a LiveKit byte stream, read and sent
// a chunk at a time so that files of any size pass with little memory.
// The stream's name defaults to the file's base name and its MIME type to
// the type of its extension. The content is compressed as it is read when
// every recipient can inflate it (see StreamOptions.NoCompression), so
// memory stays small then too. If the file cannot be read to its end, the
// stream is aborted with the error as reason.
func (r *Room) SendFile(ctx context.Context, path string, opts *StreamOptions) (StreamInfo, error) {
	const op = "SendFile"
	f, err := os.Open(path)
	if err != nil {
		return StreamInfo{}, fmt.Errorf("callstate: %s: %w", op, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return StreamInfo{}, fmt.Errorf("callstate: %s: %w", op, err)
	}
	if !st.Mode().IsRegular() {
		return StreamInfo{}, fmt.Errorf("%w: %s: %s is not a regular file", ErrInvalidArgument, op, path)
	}
	o := streamOptions(opts)
	o.Size = st.Size()
	if o.Name == "" {
		o.Name = filepath.Base(path)
	}
	if o.MimeType == "" {
		o.MimeType = mime.TypeByExtension(filepath.Ext(path))
	}
	w, err := r.openStream(ctx, op, false, o, nil, true)
	if err != nil {
		return StreamInfo{}, err
	}
	if _, err := io.Copy(w, io.LimitReader(f, o.Size)); err != nil {
		_ = w.CloseWithError(err)
		return w.Info(), err
	}
	err = w.Close() // before Info, which Close completes
	return w.Info(), err
}

// StreamText opens a text stream for text produced over time: each Write
// sends its bytes as they come (cut at character boundaries; a character
// split between writes waits for its end), Close ends the stream, and
// CloseWithError aborts it with a reason. ctx bounds every write of the
// stream: when it ends, writes fail and the stream is aborted.
func (r *Room) StreamText(ctx context.Context, opts *StreamOptions) (*StreamWriter, error) {
	return r.openStream(ctx, "StreamText", true, streamOptions(opts), nil, false)
}

// StreamBytes opens a byte stream for content produced over time; see
// StreamText.
func (r *Room) StreamBytes(ctx context.Context, opts *StreamOptions) (*StreamWriter, error) {
	return r.openStream(ctx, "StreamBytes", false, streamOptions(opts), nil, false)
}

func streamOptions(opts *StreamOptions) StreamOptions {
	if opts == nil {
		return StreamOptions{}
	}
	return *opts
}

// newStreamID returns a random version 4 UUID, the form livekit-client
// uses for stream and request ids.
func newStreamID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
