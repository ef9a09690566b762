package callstate

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// recordedCall is one request seen by the fake server API.
type recordedCall struct {
	path, contentType, auth string
	body                    []byte
}

// fakeAPI is an httptest server that records calls and answers each with
// an empty protobuf message (a valid answer for every method).
func fakeAPI(t *testing.T) (*httptest.Server, func() []recordedCall) {
	t.Helper()
	var mu sync.Mutex
	var calls []recordedCall
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, recordedCall{r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), b})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/protobuf")
	}))
	t.Cleanup(srv.Close)
	return srv, func() []recordedCall {
		mu.Lock()
		defer mu.Unlock()
		return append([]recordedCall(nil), calls...)
	}
}

func TestRoomServiceMintsMinimalGrants(t *testing.T) {
	t.Parallel()
	srv, calls := fakeAPI(t)
	rs, err := NewRoomService(strings.Replace(srv.URL, "http://", "ws://", 1)+"/", testKey, testSecret, nil)
	require.NoError(t, err)
	ctx := t.Context()
	meta := "m"

	admin := Grants{Room: "r", RoomAdmin: true}
	cases := []struct {
		method string
		grants Grants
		call   func() error
	}{
		{"CreateRoom", Grants{RoomCreate: true}, func() error { _, err := rs.CreateRoom(ctx, CreateRoomOptions{Name: "r"}); return err }},
		{"ListRooms", Grants{RoomList: true}, func() error { _, err := rs.ListRooms(ctx); return err }},
		{"DeleteRoom", Grants{RoomCreate: true}, func() error { return rs.DeleteRoom(ctx, "r") }},
		{"ListParticipants", admin, func() error { _, err := rs.ListParticipants(ctx, "r"); return err }},
		{"GetParticipant", admin, func() error { _, err := rs.GetParticipant(ctx, "r", "a"); return err }},
		{"RemoveParticipant", admin, func() error { return rs.RemoveParticipant(ctx, "r", "a") }},
		{"UpdateParticipant", admin, func() error {
			_, err := rs.UpdateParticipant(ctx, "r", "a", ParticipantUpdate{Metadata: &meta})
			return err
		}},
		{"UpdateRoomMetadata", admin, func() error { _, err := rs.UpdateRoomMetadata(ctx, "r", "x"); return err }},
		{"SendData", admin, func() error { return rs.SendData(ctx, "r", []byte("x"), nil) }},
	}
	for _, tc := range cases {
		require.NoError(t, tc.call(), tc.method)
	}
	got := calls()
	require.Len(t, got, len(cases))
	for i, tc := range cases {
		c := got[i]
		assert.Equal(t, "/twirp/livekit.RoomService/"+tc.method, c.path)
		assert.Equal(t, "application/protobuf", c.contentType)
		tok, ok := strings.CutPrefix(c.auth, "Bearer ")
		require.True(t, ok, c.auth)
		claims, err := ParseToken(tok, testSecret)
		require.NoError(t, err)
		assert.Equal(t, tc.grants, claims.Grants, tc.method)
		assert.Equal(t, serviceTokenValidity, claims.ValidFor)
		_, iss, err := parseTokenUnverified(tok)
		require.NoError(t, err)
		assert.Equal(t, testKey, iss)
	}
}

func TestRoomServiceRequestBodies(t *testing.T) {
	t.Parallel()
	srv, calls := fakeAPI(t)
	rs, err := NewRoomService(srv.URL, testKey, testSecret, nil)
	require.NoError(t, err)
	ctx := t.Context()
	name, meta := "N", "M"

	_, err = rs.CreateRoom(ctx, CreateRoomOptions{Name: "r", EmptyTimeout: 1, DepartureTimeout: 2 * time.Second, MaxParticipants: 3, Metadata: "m"})
	require.NoError(t, err)
	_, err = rs.UpdateParticipant(ctx, "r", "a", ParticipantUpdate{
		Name: &name, Metadata: &meta, Attributes: map[string]string{"k": ""},
		Permissions: &Permissions{CanSubscribe: true, CanUpdateMetadata: true},
	})
	require.NoError(t, err)
	require.NoError(t, rs.SendData(ctx, "r", []byte("p"), &PublishOptions{Kind: Lossy, Topic: "t", To: []string{"a", "b"}}))
	require.NoError(t, rs.SendData(ctx, "r", []byte("p"), nil))

	got := calls()
	require.Len(t, got, 4)
	var cr lkpb.CreateRoomRequest
	require.NoError(t, proto.Unmarshal(got[0].body, &cr))
	assert.Equal(t, "r", cr.GetName())
	assert.Equal(t, uint32(1), cr.GetEmptyTimeout(), "a nanosecond rounds up to one second")
	assert.Equal(t, uint32(2), cr.GetDepartureTimeout())
	assert.Equal(t, uint32(3), cr.GetMaxParticipants())
	assert.Equal(t, "m", cr.GetMetadata())

	var up lkpb.UpdateParticipantRequest
	require.NoError(t, proto.Unmarshal(got[1].body, &up))
	assert.Equal(t, "N", up.GetName())
	assert.Equal(t, "M", up.GetMetadata())
	assert.Equal(t, map[string]string{"k": ""}, up.GetAttributes())
	assert.True(t, up.GetPermission().GetCanSubscribe())
	assert.True(t, up.GetPermission().GetCanUpdateMetadata())
	assert.False(t, up.GetPermission().GetCanPublishData())

	var sd lkpb.SendDataRequest
	require.NoError(t, proto.Unmarshal(got[2].body, &sd))
	assert.Equal(t, lkpb.DataPacket_LOSSY, sd.GetKind())
	assert.Equal(t, "t", sd.GetTopic())
	assert.Equal(t, []string{"a", "b"}, sd.GetDestinationIdentities())
	assert.Len(t, sd.GetNonce(), 16)

	var sd2 lkpb.SendDataRequest
	require.NoError(t, proto.Unmarshal(got[3].body, &sd2))
	assert.Equal(t, lkpb.DataPacket_RELIABLE, sd2.GetKind())
	assert.Nil(t, sd2.Topic, "no topic must be sent as absent")
	assert.NotEqual(t, sd.GetNonce(), sd2.GetNonce())
}

func TestRoomServiceWithTokenSendsIt(t *testing.T) {
	t.Parallel()
	srv, calls := fakeAPI(t)
	rs, err := NewRoomServiceWithToken(srv.URL, "fixed-token", nil)
	require.NoError(t, err)
	_, err = rs.ListRooms(t.Context())
	require.NoError(t, err)
	require.NoError(t, rs.DeleteRoom(t.Context(), "r"))
	for _, c := range calls() {
		assert.Equal(t, "Bearer fixed-token", c.auth)
	}
}

type countingTransport struct{ n atomic.Int32 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

func TestRoomServiceHTTPClientAndPrefix(t *testing.T) {
	t.Parallel()
	srv, calls := fakeAPI(t)
	ct := &countingTransport{}
	rs, err := NewRoomService(srv.URL+"/lk/", testKey, testSecret, &RoomServiceOptions{HTTPClient: &http.Client{Transport: ct}})
	require.NoError(t, err)
	_, err = rs.ListRooms(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int32(1), ct.n.Load())
	assert.Equal(t, "/lk/twirp/livekit.RoomService/ListRooms", calls()[0].path)
}

func TestHTTPBaseURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"ws://h:7880":          "http://h:7880",
		"wss://h":              "https://h",
		"http://h:1/":          "http://h:1",
		"HTTPS://h/p/":         "https://h/p",
		" ws://h?x=1#f ":       "http://h",
		"ws://user:pw@h:1/":    "http://h:1",
		"wss://[::1]:7880/rtc": "https://[::1]:7880/rtc",
	} {
		got, err := httpBaseURL(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "h:1", "tcp://h", "ws://", "http://%zz"} {
		_, err := httpBaseURL(in)
		assert.ErrorIs(t, err, ErrInvalidArgument, in)
	}
}

func TestServerErrorSentinels(t *testing.T) {
	t.Parallel()
	all := []error{ErrNotFound, ErrNotPermitted, ErrBadToken, ErrInvalidArgument, ErrLimitExceeded, ErrServerUnreachable, ErrRejected}
	for code, want := range map[string][]error{
		"not_found":           {ErrNotFound},
		"permission_denied":   {ErrNotPermitted},
		"unauthenticated":     {ErrNotPermitted, ErrBadToken},
		"invalid_argument":    {ErrInvalidArgument},
		"malformed":           {ErrInvalidArgument},
		"out_of_range":        {ErrInvalidArgument},
		"resource_exhausted":  {ErrLimitExceeded},
		"unavailable":         {ErrServerUnreachable},
		"internal":            {ErrRejected},
		"already_exists":      {ErrRejected},
		"failed_precondition": {ErrRejected},
		"":                    {ErrRejected},
	} {
		err := error(&ServerError{Method: "M", Code: code, HTTPStatus: 400})
		for _, s := range all {
			assert.Equal(t, contains(want, s), errors.Is(err, s), "code %q, sentinel %v", code, s)
		}
	}
	unreachable := &ServerError{Method: "M", Err: io.ErrUnexpectedEOF}
	assert.ErrorIs(t, unreachable, ErrServerUnreachable)
	assert.ErrorIs(t, unreachable, io.ErrUnexpectedEOF)
	assert.NotErrorIs(t, unreachable, ErrRejected)
}

func contains(errs []error, e error) bool {
	for _, x := range errs {
		if x == e {
			return true
		}
	}
	return false
}

func TestServerErrorMessages(t *testing.T) {
	t.Parallel()
	tok, err := NewToken(testKey, testSecret, Claims{Grants: Grants{RoomList: true}})
	require.NoError(t, err)
	cases := []struct {
		name, body, code, msg string
		status                int
		is                    error
	}{
		{"twirp", `{"code":"not_found","msg":"twirp error unknown: room gone","meta":{"a":"b"}}`, "not_found", "room gone", 404, ErrNotFound},
		{"plain 401 quoting the token", "invalid token: " + tok + ", error: signature is invalid", "unauthenticated", "invalid token: [REDACTED], error: signature is invalid", 401, ErrBadToken},
		{"proxy html 502", "<html>Bad Gateway</html>", "unavailable", "<html>Bad Gateway</html>", 502, ErrServerUnreachable},
		{"json without code", `{"error":"x"}`, "resource_exhausted", `{"error":"x"}`, 429, ErrLimitExceeded},
		{"empty 500", "", "internal", "", 500, ErrRejected},
		{"invalid utf8", "\xff\xfe", "invalid_argument", "\uFFFD", 400, ErrInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := serverError("ListRooms", tc.status, []byte(tc.body))
			assert.Equal(t, tc.code, e.Code)
			assert.Equal(t, tc.msg, e.Message)
			assert.Equal(t, tc.status, e.HTTPStatus)
			assert.ErrorIs(t, e, tc.is)
			assert.True(t, strings.HasPrefix(e.Error(), "callstate: RoomService.ListRooms: "+tc.code), e.Error())
			assert.NotContains(t, e.Error(), tok)
		})
	}
	long := serverError("M", 500, []byte(strings.Repeat("x", 2000)))
	assert.Len(t, long.Message, 515)
}

func TestRoomServiceOddResponses(t *testing.T) {
	var mode atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load().(string) {
		case "garbage":
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html>hello</html>"))
		case "huge":
			w.Header().Set("Content-Type", "application/protobuf")
			chunk := make([]byte, 1<<20)
			for range 3 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		case "cut":
			// Promise more than is sent, then drop the connection.
			hj, ok := w.(http.Hijacker)
			if !ok {
				panic("no hijacker")
			}
			conn, buf, err := hj.Hijack()
			if err != nil {
				return
			}
			_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/protobuf\r\nContent-Length: 1000\r\n\r\nabc")
			_ = buf.Flush()
			conn.Close()
		case "slow":
			<-r.Context().Done()
		}
	}))
	t.Cleanup(srv.Close)
	rs, err := NewRoomService(srv.URL, testKey, testSecret, nil)
	require.NoError(t, err)
	assert.Equal(t, maxResponseBody, rs.maxBody)
	rs.maxBody = 2 << 20
	ctx := t.Context()

	mode.Store("garbage")
	_, err = rs.ListRooms(ctx)
	require.ErrorIs(t, err, ErrRejected)
	var se *ServerError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 200, se.HTTPStatus)
	assert.Contains(t, se.Message, "text/html")

	mode.Store("huge")
	_, err = rs.ListRooms(ctx)
	require.ErrorIs(t, err, ErrTooLarge)
	var size *SizeError
	require.ErrorAs(t, err, &size)
	assert.Equal(t, 2<<20, size.Limit)

	mode.Store("cut")
	_, err = rs.ListRooms(ctx)
	require.ErrorIs(t, err, ErrServerUnreachable)

	mode.Store("slow")
	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = rs.ListRooms(sctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, ErrServerUnreachable)
}

func FuzzServerError(f *testing.F) {
	f.Add(404, []byte(`{"code":"not_found","msg":"twirp error unknown: x"}`))
	f.Add(401, []byte("invalid token: eyJa.eyJb.c, error: x"))
	f.Add(502, []byte("<html></html>"))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := serverError("M", status, body)
		if !strings.HasPrefix(e.Error(), "callstate: RoomService.M") {
			t.Fatalf("bad message %q", e.Error())
		}
		if len(e.Message) > len(body)*3+16 {
			t.Fatalf("message longer than the body: %d > %d", len(e.Message), len(body))
		}
		_ = errors.Is(e, ErrRejected)
	})
}
