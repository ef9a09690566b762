package sessionstate

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// ReservedKey is the top-level key of the room metadata object that holds the
// version stamps. It is never part of the session data: Observe hides it, and
// Prepare refuses it as a session data key.
const ReservedKey = "__callstate"

// wireVersion is the value of "v" in the reserved object.
const wireVersion = 1

// wireMeta is the reserved object:
//
//	{"v":1,"h":"<digest>","w":[writers],"e":[clock,writer],"k":{key:[clock,writer],...}}
//
// Stamps are [clock, index into w]. h is the FNV-1a 64 digest (16 lower-case
// hex digits) of the canonical encoding of the session data (the metadata
// object without the reserved key). Keys named in k but absent from the data
// are deletions.
type wireMeta struct {
	V int                 `json:"v"`
	H string              `json:"h"`
	W []string            `json:"w"`
	E []uint64            `json:"e"`
	K map[string][]uint64 `json:"k"`
}

// decoded is one room metadata value, parsed.
type decoded struct {
	// object reports whether the metadata is a JSON object.
	object bool
	// data is the session data (the object without ReservedKey), with
	// compacted values; nil when the metadata is not an object.
	data map[string]json.RawMessage
	// stamped reports whether the metadata carries a valid reserved object
	// matching its data; st is then the state it encodes.
	stamped bool
	st      state
}

// decode parses a room metadata value. It never fails: metadata that is not
// a JSON object decodes with object false, and an object whose reserved key
// is missing, malformed, of another version or inconsistent with the data
// decodes with stamped false.
func decode(md string) decoded {
	var d decoded
	trimmed := bytes.TrimLeft([]byte(md), " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return d
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &raw); err != nil || raw == nil {
		return d
	}
	d.object = true
	reserved, hasReserved := raw[ReservedKey]
	delete(raw, ReservedKey)
	d.data = compactValues(raw)
	if hasReserved {
		d.st, d.stamped = decodeStamps(reserved, d.data)
	}
	return d
}

// compactValues returns the values compacted into one shared buffer.
func compactValues(raw map[string]json.RawMessage) map[string]json.RawMessage {
	size := 0
	for _, v := range raw {
		size += len(v)
	}
	var buf bytes.Buffer
	buf.Grow(size)
	type span struct{ start, end int }
	spans := make(map[string]span, len(raw))
	for k, v := range raw {
		start := buf.Len()
		if err := json.Compact(&buf, v); err != nil {
			// Unreachable: json.Unmarshal validated v.
			buf.Truncate(start)
			buf.Write(v)
		}
		spans[k] = span{start, buf.Len()}
	}
	all := buf.Bytes()
	out := make(map[string]json.RawMessage, len(raw))
	for k, s := range spans {
		out[k] = json.RawMessage(all[s.start:s.end:s.end])
	}
	return out
}

// decodeStamps validates the reserved object against data and returns the
// state they describe.
func decodeStamps(reserved json.RawMessage, data map[string]json.RawMessage) (state, bool) {
	var m wireMeta
	if err := json.Unmarshal(reserved, &m); err != nil {
		return state{}, false
	}
	if m.V != wireVersion || len(m.E) != 2 || m.H != digest(appendObject(nil, data)) {
		return state{}, false
	}
	st := newState()
	var ok bool
	if st.epoch, ok = wireStamp(m.E, m.W, true); !ok {
		return state{}, false
	}
	for k, ws := range m.K {
		s, ok := wireStamp(ws, m.W, false)
		if !ok || k == ReservedKey {
			return state{}, false
		}
		v, live := data[k]
		switch c := s.compare(st.epoch); {
		case live && c < 0:
			// A value older than the epoch cannot be in the data.
			return state{}, false
		case c < 0:
			// A deletion the epoch already implies.
			continue
		}
		e := entry{stamp: s}
		if live {
			e.value = v
		}
		st.entries[k] = e
	}
	for k := range data {
		if _, ok := m.K[k]; !ok {
			return state{}, false
		}
	}
	return st, true
}

// wireStamp converts [clock, writer index]. Only an epoch may have clock 0
// (no Replace yet); its writer index is then ignored. A clock above MaxClock
// is invalid.
func wireStamp(ws []uint64, writers []string, epoch bool) (stamp, bool) {
	if len(ws) != 2 || ws[0] > MaxClock {
		return stamp{}, false
	}
	if ws[0] == 0 {
		return stamp{}, epoch
	}
	if ws[1] >= uint64(len(writers)) {
		return stamp{}, false
	}
	return stamp{clock: ws[0], writer: writers[ws[1]]}, true
}

// encode returns the room metadata value describing s.
func encode(s *state) string {
	keys := make([]string, 0, len(s.entries))
	live := make(map[string]json.RawMessage, len(s.entries))
	writerSet := make(map[string]struct{})
	if !s.epoch.isZero() {
		writerSet[s.epoch.writer] = struct{}{}
	}
	size := 64
	for k, e := range s.entries {
		keys = append(keys, k)
		writerSet[e.stamp.writer] = struct{}{}
		if e.live() {
			live[k] = e.value
		}
		size += 2*len(k) + len(e.value) + 32
	}
	slices.Sort(keys)
	writers := make([]string, 0, len(writerSet))
	for w := range writerSet {
		writers = append(writers, w)
		size += len(w) + 4
	}
	slices.Sort(writers)
	index := make(map[string]int, len(writers))
	for i, w := range writers {
		index[w] = i
	}

	b := make([]byte, 0, size)
	b = appendObject(b, live)
	sum := digest(b)
	// Reopen the data object to append the reserved key.
	b = b[:len(b)-1]
	if len(live) > 0 {
		b = append(b, ',')
	}
	b = appendString(b, ReservedKey)
	b = append(b, `:{"v":`...)
	b = strconv.AppendInt(b, wireVersion, 10)
	b = append(b, `,"h":"`...)
	b = append(b, sum...)
	b = append(b, `","w":[`...)
	for i, w := range writers {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, w)
	}
	b = append(b, `],"e":`...)
	b = appendStamp(b, s.epoch, index)
	b = append(b, `,"k":{`...)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendStamp(b, s.entries[k].stamp, index)
	}
	b = append(b, "}}}"...)
	return string(b)
}

func appendStamp(b []byte, s stamp, index map[string]int) []byte {
	b = append(b, '[')
	b = strconv.AppendUint(b, s.clock, 10)
	b = append(b, ',')
	if s.isZero() {
		b = append(b, '0')
	} else {
		b = strconv.AppendInt(b, int64(index[s.writer]), 10)
	}
	return append(b, ']')
}

// digest returns the FNV-1a 64 digest of b as 16 hex digits.
func digest(b []byte) string {
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], hashString(b))
	return hex.EncodeToString(sum[:])
}

// appendObject appends the canonical encoding of data: keys sorted
// byte-wise, values as stored (compacted JSON), no insignificant space and no
// HTML escaping.
func appendObject(b []byte, data map[string]json.RawMessage) []byte {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = append(b, data[k]...)
	}
	return append(b, '}')
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does; <, > and & are not escaped.
func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
