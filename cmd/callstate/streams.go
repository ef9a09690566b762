package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/redact"
)

// streamChunkSize bounds the content of one stream_chunk line: 64 KiB is
// about 88 KB of base64, small enough for line-oriented readers with
// default buffers raised once, large enough that a big file is not split
// into hundreds of thousands of lines. In practice a line carries what one
// Read returns, usually one chunk as the sender cut it (15,000 bytes or
// less), since a reader that waited to fill the buffer would delay text
// produced over time.
const streamChunkSize = 64 << 10

// streamDrainTimeout bounds how long the end of the room waits for stream
// readers to write their stream_end lines before it writes its own last
// lines. The readers end at once when the Room closes (their Read fails
// with ErrClosed); the bound only matters when standard output is stuck.
const streamDrainTimeout = 2 * time.Second

// streamKind is the kind of streams a registration reads.
type streamKind string

const (
	streamBytes streamKind = "bytes"
	streamText  streamKind = "text"
)

// streamTopic names a registration: the SDK has one handler per topic for
// byte streams and another for text streams.
type streamTopic struct {
	kind  streamKind
	topic string
}

// streamReaders counts the stream handlers writing lines, so that the end
// of the room waits for their stream_end lines (the room's disconnected
// line must be the last). Its own mutex rather than a sync.WaitGroup: the
// SDK starts handlers on its own goroutines, which may begin while the end
// is waiting.
type streamReaders struct {
	mu      sync.Mutex
	n       int
	closed  bool          // the room is ending: refuse new readers
	drained chan struct{} // closed when n reaches 0 after closed
}

// begin counts a reader in; false means the room is ending and the stream
// is to be discarded.
func (s *streamReaders) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.n++
	return true
}

func (s *streamReaders) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n--
	if s.n == 0 && s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
}

// close refuses new readers and waits, at most timeout, for those running.
func (s *streamReaders) close(timeout time.Duration) {
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	if !first || s.n == 0 {
		s.mu.Unlock()
		return
	}
	drained := make(chan struct{})
	s.drained = drained
	s.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
	}
}

// registerStream runs stream_register: the topic's streams of that kind
// are read as they arrive and written as stream_open, stream_chunk and
// stream_end lines, or saved as files in dir when dir is not empty.
func (p *participant) registerStream(c *commandJSON) error {
	key, err := streamTopicOf(c)
	if err != nil {
		return err
	}
	if _, ok := p.streamTopics[key]; ok {
		return invalidArgument("%s streams on topic %q are already registered", key.kind, key.topic)
	}
	dir := ""
	if c.SaveTo != nil {
		if *c.SaveTo == "" {
			return invalidArgument(`"save_to" must name a directory`)
		}
		abs, err := filepath.Abs(*c.SaveTo)
		if err != nil {
			return invalidArgument(`"save_to": %v`, err)
		}
		if st, err := os.Stat(abs); err != nil || !st.IsDir() {
			return invalidArgument(`"save_to" must be an existing directory: %s`, abs)
		}
		dir = abs
	}
	switch key.kind {
	case streamBytes:
		err = p.room.RegisterByteStreamHandler(key.topic, func(r *callstate.ByteStreamReader) {
			p.readStream(r, r.Info(), r.From(), dir)
		})
	case streamText:
		err = p.room.RegisterTextStreamHandler(key.topic, func(r *callstate.TextStreamReader) {
			p.readStream(r, r.Info(), r.From(), dir)
		})
	}
	if err != nil {
		return err
	}
	p.streamTopics[key] = struct{}{}
	return nil
}

// unregisterStream runs stream_unregister; streams being read go on to
// their end.
func (p *participant) unregisterStream(c *commandJSON) error {
	key, err := streamTopicOf(c)
	if err != nil {
		return err
	}
	if _, ok := p.streamTopics[key]; !ok {
		return invalidArgument("no %s streams on topic %q were registered with stream_register", key.kind, key.topic)
	}
	switch key.kind {
	case streamBytes:
		p.room.UnregisterByteStreamHandler(key.topic)
	case streamText:
		p.room.UnregisterTextStreamHandler(key.topic)
	}
	delete(p.streamTopics, key)
	return nil
}

// streamTopicOf reads the topic and kind of stream_register and
// stream_unregister. The topic must be given, since "" is a topic of its
// own (streams sent without one).
func streamTopicOf(c *commandJSON) (streamTopic, error) {
	if c.Topic == nil {
		return streamTopic{}, invalidArgument(`the %s command needs a "topic" ("" for streams sent without a topic)`, c.Cmd)
	}
	switch k := streamKind(c.Kind); k {
	case streamBytes, streamText:
		return streamTopic{kind: k, topic: *c.Topic}, nil
	case "":
		return streamTopic{}, invalidArgument(`the %s command needs a "kind": "bytes" or "text"`, c.Cmd)
	default:
		return streamTopic{}, invalidArgument(`"kind" must be "bytes" or "text", not %q`, c.Kind)
	}
}

// readStream writes one incoming stream's lines, on the SDK's handler
// goroutine. It writes each line whole through the line writer, and the
// lines of one stream in order; while standard output is slow it reads
// nothing, which is the SDK's backpressure (the sender slows down, and a
// stream stuck for StreamStallLimit ends with stream_too_slow), so the
// memory it holds is one buffer of streamChunkSize.
func (p *participant) readStream(r io.Reader, info callstate.StreamInfo, from, dir string) {
	if !p.readers.begin() {
		return
	}
	defer p.readers.end()

	open := streamLineJSON{Type: "stream_open", Time: time.Now().UTC(), StreamID: info.ID, From: ptr(from), Stream: openedStream(info)}
	var file *os.File
	var saveErr error
	if dir != "" {
		file, saveErr = os.CreateTemp(dir, fileNamePattern(info))
		if saveErr == nil {
			open.Path = file.Name()
		}
	}
	p.out.write(open)

	var total int64
	end := func(err error) {
		l := streamLineJSON{Type: "stream_end", Time: time.Now().UTC(), StreamID: info.ID, Size: ptr(total)}
		if file != nil {
			if cerr := file.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("saving the stream: %w", cerr)
			}
			if err == nil {
				l.Path = file.Name()
			} else {
				// An incomplete file is not kept: its bytes are not the
				// stream's.
				_ = os.Remove(file.Name())
			}
		}
		if err != nil {
			l.Error = redact.String(err.Error())
			l.Code = streamErrorCode(err)
		}
		p.out.write(l)
	}
	if saveErr != nil {
		end(&saveError{fmt.Errorf("saving the stream: %w", saveErr)})
		return
	}

	buf := make([]byte, streamChunkSize)
	held := 0 // bytes at buf's start: the unfinished character of a text stream
	for {
		n, err := r.Read(buf[held:])
		n += held
		held = 0
		if n > 0 {
			data := buf[:n]
			if info.Text {
				// A line's text is whole characters: a character
				// split between reads waits for its end.
				cut := completeUTF8(data)
				if !utf8.Valid(data[:cut]) {
					end(fmt.Errorf("%w: the text stream is not UTF-8", callstate.ErrStreamIncomplete))
					return
				}
				data = data[:cut]
			}
			if len(data) > 0 {
				l := streamLineJSON{Type: "stream_chunk", Time: time.Now().UTC(), StreamID: info.ID, Offset: ptr(total), Size: ptr(int64(len(data)))}
				switch {
				case file != nil:
					if _, werr := file.Write(data); werr != nil {
						end(&saveError{fmt.Errorf("saving the stream: %w", werr)})
						return
					}
				case info.Text:
					l.Text = ptr(string(data))
				default:
					l.Payload = data
				}
				total += int64(len(data))
				p.out.write(l)
			}
			// The unfinished character moves to the buffer's start, once
			// the line that used the buffer is written.
			held = copy(buf, buf[len(data):n])
		}
		if err == io.EOF {
			if held > 0 {
				end(fmt.Errorf("%w: the text stream ends inside a character", callstate.ErrStreamIncomplete))
				return
			}
			end(nil)
			return
		}
		if err != nil {
			end(err)
			return
		}
	}
}

// completeUTF8 returns the length of b's longest prefix that does not end
// inside a character.
func completeUTF8(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

// saveError is a failure to write a stream's file.
type saveError struct{ err error }

func (e *saveError) Error() string { return e.err.Error() }
func (e *saveError) Unwrap() error { return e.err }

// streamErrorCode is the code of a stream_end line that reports an error.
func streamErrorCode(err error) string {
	var se *saveError
	if errors.As(err, &se) {
		return "save_failed"
	}
	return errorCode(err)
}

// fileNamePattern is the os.CreateTemp pattern of a saved stream's file:
// the stream's name (its id when it has none) made safe, with a random
// part before the extension so that streams of one name do not collide.
// The name is the sender's: only its base name, in a small alphabet, is
// used, so that it can neither leave the directory nor be a hidden or
// special file.
func fileNamePattern(info callstate.StreamInfo) string {
	name := path.Base(strings.ReplaceAll(info.Name, `\`, "/"))
	if name == "/" {
		name = "" // a name of slashes only
	}
	if name = safeName(name); name == "" {
		name = safeName(info.ID)
	}
	if len(name) > 100 {
		name = name[len(name)-100:]
	}
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	if base == "" {
		base = "stream"
	}
	return base + "-*" + ext
}

// safeName maps s to the characters a-z, A-Z, 0-9, '.', '-' and '_'
// (others become '_'), without leading dots.
func safeName(s string) string {
	safe := []byte(s)
	for i, c := range safe {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			safe[i] = '_'
		}
	}
	return strings.TrimLeft(string(safe), ".")
}
