package callstate_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// TestJoinTriesAgainAfterPassingRefusal: a server that refuses a join with
// a 5xx status (LiveKit's answer when its nodes are overloaded) is tried
// again, up to JoinAttempts; 4xx refusals are final at once.
func TestJoinTriesAgainAfterPassingRefusal(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	target, err := url.Parse(srv.HTTPURL())
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(target)
	var joins, refuse atomic.Int32
	status := atomic.Int32{}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/rtc") {
			joins.Add(1)
			if refuse.Add(-1) >= 0 {
				http.Error(w, "could not find any available nodes", int(status.Load()))
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	defer front.Close()
	room := srv.RoomName(t)

	// Two overloaded answers, then the join goes through.
	status.Store(http.StatusInternalServerError)
	refuse.Store(2)
	a, err := callstate.Join(ctxT(t), front.URL, srv.Token(room, "alice"), nil)
	require.NoError(t, err)
	defer a.Close()
	assert.EqualValues(t, 3, joins.Load(), "two refusals, then the join")
	b := srv.Join(t, room, "bob", nil)
	exchange(t, b, a, "bob", "alice")

	// Refused more often than JoinAttempts: the last refusal is the error.
	joins.Store(0)
	status.Store(http.StatusServiceUnavailable)
	refuse.Store(5)
	_, err = callstate.Join(ctxT(t), front.URL, srv.Token(room, "carol"), &callstate.JoinOptions{JoinAttempts: 2})
	var je *callstate.JoinError
	require.ErrorAs(t, err, &je)
	assert.ErrorIs(t, err, callstate.ErrJoinRefused)
	assert.Equal(t, http.StatusServiceUnavailable, je.StatusCode)
	assert.EqualValues(t, 2, joins.Load())

	// A refusal of the request itself is not tried again.
	joins.Store(0)
	status.Store(http.StatusForbidden)
	refuse.Store(5)
	_, err = callstate.Join(ctxT(t), front.URL, srv.Token(room, "dave"), nil)
	require.ErrorAs(t, err, &je)
	assert.Equal(t, http.StatusForbidden, je.StatusCode)
	assert.EqualValues(t, 1, joins.Load())
}
