package sessionstate

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseObject(t *testing.T) {
	type point struct {
		X int    `json:"x"`
		S string `json:"s,omitempty"`
	}
	ok := []struct {
		name string
		in   any
		want string
	}{
		{"raw", json.RawMessage(` { "b" : [ 1, 2 ], "a" : 1.0 } `), `{"a":1.0,"b":[1,2]}`},
		{"bytes", []byte(`{"n":null}`), `{"n":null}`},
		{"struct", point{X: 3}, `{"x":3}`},
		{"map", map[string]any{"k": map[string]int{"z": 1}}, `{"k":{"z":1}}`},
		{"raw map", map[string]json.RawMessage{"k": json.RawMessage(" [ true ] ")}, `{"k":[true]}`},
		{"empty", map[string]int{}, `{}`},
		{"html", map[string]string{"h": "<&>"}, `{"h":"<&>"}`},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseObject(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(EncodeObject(m)))
		})
	}

	bad := []struct {
		name string
		in   any
		msg  string
	}{
		{"nil", nil, "not a JSON object (got nil)"},
		{"nil map", map[string]json.RawMessage(nil), "not a JSON object (got nil map)"},
		{"string", "hello", "not a JSON object (got string)"},
		{"json text in a string", `{"a":1}`, "not a JSON object (got string)"},
		{"array", []int{1}, "not a JSON object (got array)"},
		{"number", 3, "not a JSON object (got number)"},
		{"bool", true, "not a JSON object (got boolean)"},
		{"null", json.RawMessage(`null`), "not a JSON object (got null)"},
		{"empty", json.RawMessage(``), "empty input"},
		{"invalid", json.RawMessage(`{"a":}`), "not valid JSON"},
		{"trailing", []byte(`{} {}`), "not valid JSON"},
		{"reserved", json.RawMessage(`{"__callstate":1}`), `key "__callstate" is reserved`},
		{"reserved map", map[string]json.RawMessage{ReservedKey: json.RawMessage(`1`)}, "reserved"},
		{"bad utf8 key", map[string]json.RawMessage{"\xff": json.RawMessage(`1`)}, "not valid UTF-8"},
		{"bad value", map[string]json.RawMessage{"k": json.RawMessage(`[`)}, `value of key "k" is not valid JSON`},
		{"unmarshalable", map[string]any{"f": func() {}}, "unsupported type"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseObject(tc.in)
			require.ErrorIs(t, err, ErrInvalidData)
			assert.Contains(t, err.Error(), tc.msg)
			assert.True(t, strings.HasPrefix(err.Error(), "callstate: "))
		})
	}
}

func TestParseObjectCopies(t *testing.T) {
	in := json.RawMessage(`{"k":"abc"}`)
	m, err := ParseObject(in)
	require.NoError(t, err)
	in[7] = 'Z'
	assert.Equal(t, `"abc"`, string(m["k"]))
}

func TestEncodeObject(t *testing.T) {
	assert.Equal(t, `{}`, string(EncodeObject(nil)))
	m := map[string]json.RawMessage{"b": json.RawMessage(`2`), "a": json.RawMessage(`"<x>"`), "é": json.RawMessage(`[]`), "\n": json.RawMessage(`{}`)}
	assert.Equal(t, `{"\n":{},"a":"<x>","b":2,"é":[]}`, string(EncodeObject(m)))
}

// TestAppendString checks the JSON string encoder against encoding/json
// (without HTML escaping) on random and tricky strings.
func TestAppendString(t *testing.T) {
	cases := []string{"", "plain", `quote " backslash \ slash /`, "\x00\x01\x1f\x7f", "\t\n\r\b\f",
		"é€𝄞", "\u2028\u2029", "<&>", "bad \xff utf8 \xc3", "\xed\xa0\x80"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode(s))
		got := appendString(nil, s)
		require.Equal(t, strings.TrimSuffix(want.String(), "\n"), string(got), "%q", s)
		var back string
		require.NoError(t, json.Unmarshal(got, &back))
		if utf8.ValidString(s) {
			require.Equal(t, s, back)
		}
	}
}
