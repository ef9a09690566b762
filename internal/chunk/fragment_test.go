package chunk

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFragmentHeaderRoundTrip(t *testing.T) {
	for _, h := range []FragmentHeader{
		{MessageID: 7, Total: 10, Index: 0, Count: 2, Topic: "topic"},
		{MessageID: 1<<32 - 1, Total: 1<<32 - 1, Index: 65534, Count: 65535},
		{MessageID: 0, Total: 0, Index: 0, Count: 1},
		{Total: 100000, Index: 0, Count: 3, Topic: strings.Repeat("é", 1000)},
	} {
		b := AppendFragmentHeader(nil, &h)
		assert.Len(t, b, h.headerLen())
		data := []byte{}
		if h.Total > 0 {
			data = []byte{42}
		}
		got, rest, err := ParseFragment(append(b, data...))
		require.NoError(t, err)
		assert.Equal(t, h, got)
		assert.Equal(t, data, rest)
	}
}

func TestFragmentHeaderLayout(t *testing.T) {
	b := AppendFragmentHeader(nil, &FragmentHeader{MessageID: 0x01020304, Total: 0x05060708, Index: 0, Count: 0x0a0b, Topic: "ab"})
	assert.Equal(t, []byte{1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x0a, 0x0b, 0, 2, 'a', 'b'}, b)
	b = AppendFragmentHeader(nil, &FragmentHeader{MessageID: 9, Total: 300, Index: 2, Count: 3, Topic: "ignored"})
	assert.Equal(t, []byte{1, 0, 0, 0, 9, 0, 0, 1, 44, 0, 2, 0, 3}, b)
}

func TestParseFragmentErrors(t *testing.T) {
	valid := AppendFragmentHeader(nil, &FragmentHeader{MessageID: 1, Total: 10, Index: 0, Count: 2, Topic: "abc"})
	for _, tc := range []struct {
		name string
		p    []byte
		err  error
	}{
		{"empty", nil, errFragmentShort},
		{"version", append([]byte{2}, valid[1:]...), errFragmentVersion},
		{"short fixed", valid[:12], errFragmentShort},
		{"short topic length", valid[:14], errFragmentShort},
		{"short topic", valid[:16], errFragmentShort},
		{"no data", valid, errFragmentEmpty},
		{"count zero", AppendFragmentHeader(nil, &FragmentHeader{Total: 10, Index: 1, Count: 0}), errFragmentCount},
		{"index past count", append(AppendFragmentHeader(nil, &FragmentHeader{Total: 10, Index: 2, Count: 2}), 1), errFragmentCount},
		{"more fragments than bytes", append(AppendFragmentHeader(nil, &FragmentHeader{Total: 2, Index: 1, Count: 3}), 1), errFragmentCount},
		{"topic not UTF-8", append(AppendFragmentHeader(nil, &FragmentHeader{Total: 2, Count: 1, Topic: "\xff"}), 1, 2), errFragmentTopic},
		{"longer than message", append(AppendFragmentHeader(nil, &FragmentHeader{Total: 2, Index: 1, Count: 2}), 1, 2, 3), errFragmentLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseFragment(tc.p)
			require.ErrorIs(t, err, tc.err)
		})
	}
}
