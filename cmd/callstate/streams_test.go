package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
)

// pieces is a stream reader that returns its pieces one Read at a time,
// then err (io.EOF when nil).
type pieces struct {
	p   [][]byte
	err error
}

func (r *pieces) Read(b []byte) (int, error) {
	if len(r.p) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	n := copy(b, r.p[0])
	if n == len(r.p[0]) {
		r.p = r.p[1:]
	} else {
		r.p[0] = r.p[0][n:]
	}
	return n, nil
}

// readLines runs readStream on r and returns the lines it wrote.
func readLines(t testing.TB, r io.Reader, info callstate.StreamInfo, dir string) []streamLineJSON {
	t.Helper()
	var out bytes.Buffer
	p := &participant{out: newLineWriter(&out)}
	p.readStream(r, info, "alice", dir)
	var lines []streamLineJSON
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l streamLineJSON
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), sc.Text())
		lines = append(lines, l)
	}
	return lines
}

// content checks the lines' shape (open, contiguous chunks, end) and
// returns the chunks' content and the end line.
func content(t testing.TB, lines []streamLineJSON, info callstate.StreamInfo) ([]byte, streamLineJSON) {
	t.Helper()
	require.GreaterOrEqual(t, len(lines), 2)
	require.Equal(t, "stream_open", lines[0].Type)
	require.Equal(t, info.ID, lines[0].StreamID)
	end := lines[len(lines)-1]
	require.Equal(t, "stream_end", end.Type)
	var data []byte
	for _, l := range lines[1 : len(lines)-1] {
		require.Equal(t, "stream_chunk", l.Type)
		require.NotNil(t, l.Offset)
		require.Equal(t, int64(len(data)), *l.Offset)
		var b []byte
		if info.Text {
			require.NotNil(t, l.Text)
			require.True(t, utf8.ValidString(*l.Text), "a chunk's text is whole characters")
			b = []byte(*l.Text)
		} else {
			b = l.Payload
		}
		require.NotEmpty(t, b)
		require.LessOrEqual(t, len(b), streamChunkSize)
		require.Equal(t, int64(len(b)), *l.Size)
		data = append(data, b...)
	}
	require.NotNil(t, end.Size)
	require.Equal(t, int64(len(data)), *end.Size)
	return data, end
}

func TestReadStreamText(t *testing.T) {
	info := callstate.StreamInfo{ID: "s1", Topic: "notes", Text: true, Size: -1}
	// "é" and "✓" cut between reads: each line has whole characters.
	text := "héllo ✓ wörld"
	b := []byte(text)
	lines := readLines(t, &pieces{p: [][]byte{b[:2], b[2:8], b[8:9], b[9:]}}, info, "")
	got, end := content(t, lines, info)
	assert.Equal(t, text, string(got))
	assert.Empty(t, end.Error)
	assert.Equal(t, "alice", *lines[0].From)
	assert.Equal(t, "notes", lines[0].Stream.Topic)
	assert.Nil(t, lines[0].Stream.Size, "unknown size")
	assert.Equal(t, "h", *lines[1].Text, "the first read ends inside é")

	// Not UTF-8, and a text that ends inside a character.
	for _, bad := range [][]byte{{'a', 0xff, 'b'}, []byte("ok\xe2\x9c")} {
		lines = readLines(t, &pieces{p: [][]byte{bad}}, info, "")
		_, end = content(t, lines, info)
		assert.Equal(t, "stream_incomplete", end.Code, "%q", bad)
		assert.NotEmpty(t, end.Error)
	}
}

func TestReadStreamBytesAndErrors(t *testing.T) {
	info := callstate.StreamInfo{ID: "s2", Name: "a.bin", Size: 200 << 10}
	data := bytes.Repeat([]byte{0, 1, 2, 0xff}, 50<<10)
	// One read larger than a line: cut at streamChunkSize.
	lines := readLines(t, bytes.NewReader(data), info, "")
	got, end := content(t, lines, info)
	assert.Equal(t, data, got)
	assert.Len(t, lines, 2+len(data)/streamChunkSize+1)
	assert.Equal(t, int64(200<<10), *lines[0].Stream.Size)
	assert.Empty(t, end.Code)

	for err, code := range map[error]string{
		fmt.Errorf("%w: camera unplugged", callstate.ErrStreamAborted):    "stream_aborted",
		callstate.ErrStreamTooSlow:                                        "stream_too_slow",
		fmt.Errorf("%w: 3 bytes of the 9", callstate.ErrStreamIncomplete): "stream_incomplete",
		callstate.ErrClosed:                                               "closed",
	} {
		lines := readLines(t, &pieces{p: [][]byte{data[:3]}, err: err}, info, "")
		got, end := content(t, lines, info)
		assert.Equal(t, data[:3], got)
		assert.Equal(t, code, end.Code)
		assert.Equal(t, err.Error(), end.Error)
	}
}

func TestReadStreamSaved(t *testing.T) {
	dir := t.TempDir()
	info := callstate.StreamInfo{ID: "s3", Name: "../../x/..\\evil name.tar.gz", Size: -1}
	data := bytes.Repeat([]byte("data"), 40<<10)
	lines := readLines(t, &pieces{p: [][]byte{data[:100], data[100:]}}, info, dir)
	require.Greater(t, len(lines), 3)
	end := lines[len(lines)-1]
	assert.Empty(t, end.Error)
	assert.Equal(t, lines[0].Path, end.Path)
	assert.Equal(t, dir, filepath.Dir(end.Path))
	assert.Regexp(t, `^evil_name\.tar-[0-9]+\.gz$`, filepath.Base(end.Path))
	for _, l := range lines[1 : len(lines)-1] {
		assert.Nil(t, l.Payload)
		assert.Nil(t, l.Text)
	}
	saved, err := os.ReadFile(end.Path)
	require.NoError(t, err)
	assert.Equal(t, data, saved)

	// An aborted stream leaves no file.
	lines = readLines(t, &pieces{p: [][]byte{data[:10]}, err: callstate.ErrStreamAborted}, info, dir)
	end = lines[len(lines)-1]
	assert.Equal(t, "stream_aborted", end.Code)
	assert.Empty(t, end.Path)
	_, err = os.Stat(lines[0].Path)
	assert.ErrorIs(t, err, os.ErrNotExist)

	// A directory that is gone: the stream ends at once with save_failed.
	gone := filepath.Join(dir, "gone")
	lines = readLines(t, &pieces{p: [][]byte{data}}, info, gone)
	require.Len(t, lines, 2)
	assert.Equal(t, "save_failed", lines[1].Code)
	assert.Empty(t, lines[0].Path)
}

func TestFileNamePattern(t *testing.T) {
	for name, want := range map[string]string{
		"report.pdf":                      "report-*.pdf",
		"../../etc/passwd":                "passwd-*",
		`..\..\windows\system.ini`:        "system-*.ini",
		".bashrc":                         "bashrc-*",
		"..":                              "id_1-*",
		"/":                               "id_1-*",
		"...":                             "id_1-*",
		"a b*c?.txt":                      "a_b_c_-*.txt",
		"":                                "id_1-*",
		"naïve.txt":                       "na__ve-*.txt",
		strings.Repeat("x", 300) + ".bin": strings.Repeat("x", 96) + "-*.bin",
	} {
		got := fileNamePattern(callstate.StreamInfo{ID: "id/1", Name: name})
		assert.Equal(t, want, got, "%q", name)
		assert.NotContains(t, strings.TrimSuffix(got, "-*"+filepath.Ext(got)), "*")
		assert.NotContains(t, got, "/")
	}
}

func TestCompleteUTF8(t *testing.T) {
	for s, want := range map[string]int{
		"":                 0,
		"abc":              3,
		"ab\xc3":           2,
		"ab\xc3\xa9":       4,
		"\xe2\x9c":         0,
		"\xf0\x9f\x98":     0,
		"\xf0\x9f\x98\x80": 4,
		"a\x80":            2, // not a start: left for utf8.Valid to refuse
		"a\xff":            2,
	} {
		assert.Equal(t, want, completeUTF8([]byte(s)), "%q", s)
	}
}

// The end of the room waits for readers in progress, refuses new ones,
// and stops waiting at its bound.
func TestStreamReadersClose(t *testing.T) {
	var s streamReaders
	require.True(t, s.begin())
	var wg sync.WaitGroup
	closed := make(chan struct{})
	wg.Go(func() {
		s.close(time.Minute)
		close(closed)
	})
	select {
	case <-closed:
		t.Fatal("close returned while a reader ran")
	case <-time.After(50 * time.Millisecond):
	}
	s.end()
	wg.Wait()
	assert.False(t, s.begin(), "no reader after close")

	var stuck streamReaders
	require.True(t, stuck.begin())
	start := time.Now()
	stuck.close(100 * time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	stuck.end()
}

// FuzzReadStreamText: text streams cut anywhere come out as lines of whole
// characters whose concatenation is the stream, or end with an error
// exactly when the stream is not UTF-8.
func FuzzReadStreamText(f *testing.F) {
	f.Add([]byte("héllo ✓"), uint8(2))
	f.Add([]byte("a\xffb"), uint8(1))
	f.Add([]byte("\xf0\x9f\x98\x80\xf0\x9f"), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		var ps [][]byte
		step := int(cut%7) + 1
		for i := 0; i < len(data); i += step {
			ps = append(ps, data[i:min(i+step, len(data))])
		}
		info := callstate.StreamInfo{ID: "f", Text: true, Size: -1}
		lines := readLines(t, &pieces{p: ps}, info, "")
		got, end := content(t, lines, info)
		if utf8.Valid(data) {
			require.Empty(t, end.Error)
			require.Equal(t, string(data), string(got))
		} else {
			require.Equal(t, "stream_incomplete", end.Code)
			require.True(t, bytes.HasPrefix(data, got))
		}
	})
}
