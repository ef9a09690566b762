package signal

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func wsURL(s *httptest.Server) string { return "ws" + strings.TrimPrefix(s.URL, "http") }

func frame(t *testing.T, m *lkpb.SignalResponse) []byte {
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

func join(pingInterval, pingTimeout int32) *lkpb.SignalResponse {
	return &lkpb.SignalResponse{Message: &lkpb.SignalResponse_Join{Join: &lkpb.JoinResponse{
		Room: &lkpb.Room{Name: "r"}, PingInterval: pingInterval, PingTimeout: pingTimeout}}}
}

// fakeServer runs handle for each WebSocket connection.
func fakeServer(t *testing.T, handle func(ctx context.Context, c *websocket.Conn, r *http.Request)) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		handle(r.Context(), c, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestJoinURL(t *testing.T) {
	u, err := JoinURL(Options{URL: "https://example.com/base/", Token: "tok", SDKVersion: "1", Attributes: map[string]string{"a": "b"}})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(u, "wss://example.com/base/rtc?"), u)
	// base64url of {"a":"b"}
	for _, p := range []string{"access_token=tok", "protocol=16", "sdk=go", "auto_subscribe=0", "attributes=eyJhIjoiYiJ9"} {
		assert.Contains(t, u, p)
	}
	assert.NotContains(t, u, "reconnect")
	pu, err := url.Parse(u)
	require.NoError(t, err)
	assert.Equal(t, "CAP_COMPRESSION_DEFLATE_RAW", pu.Query().Get("capabilities"))
	u, err = JoinURL(Options{URL: "ws://h", WithoutCapabilities: true})
	require.NoError(t, err)
	assert.NotContains(t, u, "capabilities")
	u, err = JoinURL(Options{URL: "ws://h", Reconnect: true, SID: "PA_1"})
	require.NoError(t, err)
	assert.Contains(t, u, "reconnect=1")
	assert.Contains(t, u, "sid=PA_1")
	for _, bad := range []string{"ftp://h", "ws://", "%zz"} {
		_, err := JoinURL(Options{URL: bad})
		assert.Error(t, err, bad)
	}
}

func TestJoinURLv1CarriesTheJoinRequest(t *testing.T) {
	offer := &lkpb.SessionDescription{Type: "offer", Sdp: "v=0...", Id: 1}
	raw, err := JoinURL(Options{URL: "http://h:7880", Token: "tok", SDKVersion: "9", SinglePC: true, AutoSubscribe: true,
		Attributes: map[string]string{"k": "v"}, PublisherOffer: offer})
	require.NoError(t, err)
	u, err := url.Parse(raw)
	require.NoError(t, err)
	assert.Equal(t, "ws", u.Scheme)
	assert.Equal(t, PathV1, u.Path)
	assert.Equal(t, "tok", u.Query().Get("access_token"))
	assert.Empty(t, u.Query().Get("protocol"), "v1 carries the protocol in ClientInfo")
	wb, err := base64.URLEncoding.DecodeString(u.Query().Get("join_request"))
	require.NoError(t, err)
	var w lkpb.WrappedJoinRequest
	require.NoError(t, proto.Unmarshal(wb, &w))
	assert.Equal(t, lkpb.WrappedJoinRequest_NONE, w.GetCompression())
	var jr lkpb.JoinRequest
	require.NoError(t, proto.Unmarshal(w.GetJoinRequest(), &jr))
	assert.Equal(t, int32(ProtocolVersion), jr.GetClientInfo().GetProtocol())
	assert.Equal(t, lkpb.ClientInfo_GO, jr.GetClientInfo().GetSdk())
	assert.Equal(t, "9", jr.GetClientInfo().GetVersion())
	assert.True(t, jr.GetConnectionSettings().GetAutoSubscribe())
	assert.False(t, jr.GetConnectionSettings().GetAutoSubscribeDataTrack())
	assert.Equal(t, map[string]string{"k": "v"}, jr.GetParticipantAttributes())
	assert.True(t, proto.Equal(offer, jr.GetPublisherOffer()))
	assert.False(t, jr.GetReconnect())
	assert.Equal(t, []lkpb.ClientInfo_Capability{lkpb.ClientInfo_CAP_COMPRESSION_DEFLATE_RAW}, jr.GetClientInfo().GetCapabilities())

	// A resume names the session and offers nothing: the PeerConnection
	// stays as it is.
	raw, err = JoinURL(Options{URL: "ws://h", SinglePC: true, Reconnect: true, SID: "PA_1", PublisherOffer: offer})
	require.NoError(t, err)
	u, _ = url.Parse(raw)
	wb, _ = base64.URLEncoding.DecodeString(u.Query().Get("join_request"))
	require.NoError(t, proto.Unmarshal(wb, &w))
	require.NoError(t, proto.Unmarshal(w.GetJoinRequest(), &jr))
	assert.True(t, jr.GetReconnect())
	assert.Equal(t, "PA_1", jr.GetParticipantSid())
	assert.Nil(t, jr.GetPublisherOffer())
}

func TestRefusedHandshakeSurfacesTheBody(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "invalid token: signature is invalid", http.StatusUnauthorized)
	}))
	defer s.Close()
	_, _, err := Dial(context.Background(), Options{URL: wsURL(s), Token: "x"})
	var de *DialError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, http.StatusUnauthorized, de.StatusCode)
	assert.Equal(t, "invalid token: signature is invalid", de.Body)
}

func TestFramesInOrderMalformedCountedPingsAnswered(t *testing.T) {
	pings := make(chan *lkpb.Ping, 4)
	s := fakeServer(t, func(ctx context.Context, c *websocket.Conn, _ *http.Request) {
		_ = c.Write(ctx, websocket.MessageBinary, frame(t, join(1, 5)))
		_ = c.Write(ctx, websocket.MessageBinary, []byte{0xff, 0xff, 0xff}) // malformed
		_ = c.Write(ctx, websocket.MessageText, []byte("{}"))               // not binary
		for i := range 3 {
			_ = c.Write(ctx, websocket.MessageBinary, frame(t, &lkpb.SignalResponse{Message: &lkpb.SignalResponse_RefreshToken{RefreshToken: string(rune('a' + i))}}))
		}
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			var req lkpb.SignalRequest
			if proto.Unmarshal(b, &req) == nil && req.GetPingReq() != nil {
				pings <- req.GetPingReq()
				_ = c.Write(ctx, websocket.MessageBinary, frame(t, &lkpb.SignalResponse{Message: &lkpb.SignalResponse_PongResp{
					PongResp: &lkpb.Pong{LastPingTimestamp: req.GetPingReq().GetTimestamp()}}}))
			}
		}
	})
	got := make(chan string, 8)
	c, first, err := Dial(context.Background(), Options{URL: wsURL(s), Handler: func(m *lkpb.SignalResponse) {
		if tok := m.GetRefreshToken(); tok != "" {
			got <- tok
		}
	}})
	require.NoError(t, err)
	require.NotNil(t, first.GetJoin())
	done := make(chan error, 1)
	go func() { done <- c.Run() }()
	for _, want := range []string{"a", "b", "c"} {
		select {
		case tok := <-got:
			assert.Equal(t, want, tok)
		case <-time.After(5 * time.Second):
			t.Fatal("frame not delivered")
		}
	}
	select {
	case p := <-pings:
		assert.NotZero(t, p.GetTimestamp())
	case <-time.After(5 * time.Second):
		t.Fatal("no ping within the server's interval")
	}
	assert.EqualValues(t, 1, c.Malformed())
	c.Close(context.Background(), true)
	assert.ErrorIs(t, <-done, ErrClosed)
	assert.ErrorIs(t, c.Send(context.Background(), &lkpb.SignalRequest{}), ErrClosed)
}

func TestSilentServerTimesOut(t *testing.T) {
	s := fakeServer(t, func(ctx context.Context, c *websocket.Conn, _ *http.Request) {
		_ = c.Write(ctx, websocket.MessageBinary, frame(t, join(1, 2)))
		// Read (and drop) pings, never answer.
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	})
	c, _, err := Dial(context.Background(), Options{URL: wsURL(s)})
	require.NoError(t, err)
	err = c.Run()
	assert.True(t, errors.Is(err, ErrTimeout), "got %v", err)
	c.Close(context.Background(), false)
}

func TestDialBoundedByContext(t *testing.T) {
	s := fakeServer(t, func(ctx context.Context, c *websocket.Conn, _ *http.Request) {
		// Accept, then never send the join.
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, _, err := Dial(ctx, Options{URL: wsURL(s)})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "Dial gave up when its context ended")
}

// A connection judged dead is dropped at once, without a close handshake:
// the handshake would wait (up to 5 s) for a lock the blocked reader holds,
// eating into the time left to resume. The server sees the connection end
// without a close frame.
func TestDeadConnectionIsDroppedWithoutHandshake(t *testing.T) {
	status := make(chan websocket.StatusCode, 1)
	s := fakeServer(t, func(ctx context.Context, c *websocket.Conn, _ *http.Request) {
		_ = c.Write(ctx, websocket.MessageBinary, frame(t, join(1, 2)))
		for {
			if _, _, err := c.Read(ctx); err != nil {
				status <- websocket.CloseStatus(err)
				return
			}
		}
	})
	c, _, err := Dial(context.Background(), Options{URL: wsURL(s)})
	require.NoError(t, err)
	err = c.Run()
	assert.ErrorIs(t, err, ErrTimeout)
	assert.Equal(t, websocket.StatusCode(-1), <-status, "the client sent a close frame")
	c.Close(context.Background(), false)
}

// A resume the server grants may be answered after a token refresh (seen
// with livekit-server 1.13 after a quick cut): Dial returns the reconnect
// response, and Run hands the refresh to the handler first.
func TestAnswerAfterAnEarlyFrame(t *testing.T) {
	s := fakeServer(t, func(ctx context.Context, c *websocket.Conn, _ *http.Request) {
		_ = c.Write(ctx, websocket.MessageBinary, frame(t, &lkpb.SignalResponse{Message: &lkpb.SignalResponse_RefreshToken{RefreshToken: "early"}}))
		_ = c.Write(ctx, websocket.MessageBinary, frame(t, &lkpb.SignalResponse{Message: &lkpb.SignalResponse_Reconnect{Reconnect: &lkpb.ReconnectResponse{LastMessageSeq: 7}}}))
		_ = c.Write(ctx, websocket.MessageBinary, frame(t, &lkpb.SignalResponse{Message: &lkpb.SignalResponse_RefreshToken{RefreshToken: "late"}}))
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	})
	got := make(chan string, 4)
	c, first, err := Dial(context.Background(), Options{URL: wsURL(s), Reconnect: true, SID: "PA_x", Handler: func(m *lkpb.SignalResponse) {
		got <- m.GetRefreshToken()
	}})
	require.NoError(t, err)
	require.NotNil(t, first.GetReconnect(), "the answer, not the frame before it")
	assert.EqualValues(t, 7, first.GetReconnect().GetLastMessageSeq())
	done := make(chan error, 1)
	go func() { done <- c.Run() }()
	for _, want := range []string{"early", "late"} {
		select {
		case tok := <-got:
			assert.Equal(t, want, tok)
		case <-time.After(5 * time.Second):
			t.Fatal("frame not delivered")
		}
	}
	c.Close(context.Background(), false)
	assert.ErrorIs(t, <-done, ErrClosed)
}

// A server that never answers among its first frames is refused, with a
// bounded number of frames kept.
func TestNoAnswerAmongFirstFrames(t *testing.T) {
	s := fakeServer(t, func(ctx context.Context, c *websocket.Conn, _ *http.Request) {
		for range maxEarly + 1 {
			_ = c.Write(ctx, websocket.MessageBinary, frame(t, &lkpb.SignalResponse{Message: &lkpb.SignalResponse_RefreshToken{RefreshToken: "x"}}))
		}
		_, _, _ = c.Read(ctx)
	})
	_, _, err := Dial(context.Background(), Options{URL: wsURL(s)})
	var de *DialError
	require.ErrorAs(t, err, &de)
	assert.Contains(t, err.Error(), "no answer")
}
