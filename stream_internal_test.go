package callstate

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/callstate/callstate/internal/lkpb"
)

// The recipient rule of compression, as livekit-client's
// allRecipientsSupportV2 and allRecipientsSupportCompression decide it.
func TestCompressionRecipientRule(t *testing.T) {
	info := func(identity string, protocol int32, caps ...lkpb.ClientInfo_Capability) Participant {
		return participantFromInfo(&lkpb.ParticipantInfo{Identity: identity, ClientProtocol: protocol, Capabilities: caps})
	}
	deflate := lkpb.ClientInfo_CAP_COMPRESSION_DEFLATE_RAW
	remotes := map[string]Participant{
		"both":     info("both", 2, lkpb.ClientInfo_CAP_PACKET_TRAILER, deflate),
		"both3":    info("both3", 3, deflate),
		"old":      info("old", 1, deflate), // the capability without data streams v2
		"nocap":    info("nocap", 2),        // v2 without the capability
		"trailers": info("trailers", 2, lkpb.ClientInfo_CAP_PACKET_TRAILER),
	}
	assert.True(t, remotes["both"].DeflateStreams)
	assert.False(t, remotes["trailers"].DeflateStreams)
	for _, c := range []struct {
		remotes map[string]Participant
		dests   []string
		want    bool
	}{
		{nil, nil, true}, // an empty room: nobody is left out
		{remotes, []string{"both"}, true},
		{remotes, []string{"both", "both3"}, true},
		{remotes, []string{"both", "old"}, false},
		{remotes, []string{"nocap"}, false},
		{remotes, []string{"trailers"}, false},
		{remotes, []string{"both", "gone"}, false}, // unknown: cannot be told
		{remotes, nil, false},                      // a broadcast reaches them all
		{map[string]Participant{"both": remotes["both"], "both3": remotes["both3"]}, nil, true},
	} {
		assert.Equal(t, c.want, everyRecipient(c.remotes, c.dests, canDeflate), "%v to %v", len(c.remotes), c.dests)
	}
	// Inline content needs v2 only.
	assert.True(t, everyRecipient(remotes, []string{"nocap"}, speaksV2))
	assert.False(t, everyRecipient(remotes, []string{"old"}, speaksV2))
}
