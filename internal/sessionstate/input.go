package sessionstate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrInvalidData is wrapped by every error about session data supplied by
// the caller: a value that is not a JSON object, invalid JSON, a key that is
// not valid UTF-8, or the reserved key.
var ErrInvalidData = errors.New("callstate: invalid session data")

// ParseObject converts caller input into session data: a map from top-level
// key to compacted JSON value. A json.RawMessage or []byte is taken as JSON
// text; a map[string]json.RawMessage is validated and copied; any other value
// (a string included) goes through json.Marshal (without HTML escaping). The
// result must be a JSON
// object: anything else, including nil and JSON null, yields an error
// wrapping ErrInvalidData. A key equal to ReservedKey is refused.
func ParseObject(v any) (map[string]json.RawMessage, error) {
	switch v := v.(type) {
	case nil:
		return nil, fmt.Errorf("%w: not a JSON object (got nil)", ErrInvalidData)
	case json.RawMessage:
		return parseObjectText(v)
	case []byte:
		return parseObjectText(v)
	case map[string]json.RawMessage:
		if v == nil {
			return nil, fmt.Errorf("%w: not a JSON object (got nil map)", ErrInvalidData)
		}
		return normalize(v)
	default:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidData, err)
		}
		return parseObjectText(buf.Bytes())
	}
}

func parseObjectText(b []byte) (map[string]json.RawMessage, error) {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrInvalidData)
	}
	if !json.Valid(t) {
		return nil, fmt.Errorf("%w: not valid JSON", ErrInvalidData)
	}
	if t[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object (got %s)", ErrInvalidData, jsonKind(t[0]))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(t, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidData, err)
	}
	if _, ok := m[ReservedKey]; ok {
		return nil, fmt.Errorf("%w: key %q is reserved", ErrInvalidData, ReservedKey)
	}
	return compactValues(m), nil
}

func jsonKind(c byte) string {
	switch c {
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// normalize validates a caller's map and returns a copy with compacted
// values.
func normalize(m map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	for k, v := range m {
		if k == ReservedKey {
			return nil, fmt.Errorf("%w: key %q is reserved", ErrInvalidData, ReservedKey)
		}
		if !utf8.ValidString(k) {
			return nil, fmt.Errorf("%w: key %q is not valid UTF-8", ErrInvalidData, k)
		}
		if !json.Valid(v) {
			return nil, fmt.Errorf("%w: value of key %q is not valid JSON", ErrInvalidData, k)
		}
	}
	return compactValues(m), nil
}

// EncodeObject returns the canonical JSON encoding of session data: keys
// sorted byte-wise, values as given (ParseObject and Observe compact them),
// no HTML escaping. A nil map encodes as {}.
func EncodeObject(data map[string]json.RawMessage) []byte {
	size := 2
	for k, v := range data {
		size += len(k) + len(v) + 4
	}
	return appendObject(make([]byte, 0, size), data)
}

// isNull reports whether a compacted JSON value is null.
func isNull(v json.RawMessage) bool { return string(v) == "null" }
