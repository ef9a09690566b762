package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/callstate/callstate"
)

var webhookVerbs = []subcommand{
	{"listen", "", "receive webhooks and print the verified events as JSON lines", runWebhookListen},
}

func webhookFlags(e *env) *flag.FlagSet {
	fs := newFlagSet(e, "webhook", "<command> [flags]", "Webhook receives LiveKit's webhooks.")
	fs.Usage = func() { verbsUsage(fs.Output(), "webhook", webhookVerbs) }
	return fs
}

func runWebhook(ctx context.Context, args []string, e *env) int {
	return runVerbs(ctx, "webhook", webhookVerbs, args, e)
}

// The JSON line of a webhook event.
type webhookJSON struct {
	ID          string                 `json:"id"`
	Event       string                 `json:"event"`
	CreatedAt   time.Time              `json:"created_at"`
	Room        *callstate.RoomInfo    `json:"room,omitempty"`
	Participant *callstate.Participant `json:"participant,omitempty"`
	Track       *trackJSON             `json:"track,omitempty"`
	Egress      *egressJSON            `json:"egress,omitempty"`
	Ingress     *ingressJSON           `json:"ingress,omitempty"`
}

type trackJSON struct {
	SID      string `json:"sid"`
	Type     string `json:"type"`
	Source   string `json:"source"`
	Name     string `json:"name,omitempty"`
	Muted    bool   `json:"muted"`
	Width    int    `json:"width,omitempty"`
	Height   int    `json:"height,omitempty"`
	MimeType string `json:"mime_type,omitempty"`
}

type egressJSON struct {
	ID        string     `json:"id"`
	RoomName  string     `json:"room_name,omitempty"`
	Status    string     `json:"status"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	Error     string     `json:"error,omitempty"`
}

type ingressJSON struct {
	ID                  string `json:"id"`
	Name                string `json:"name,omitempty"`
	Input               string `json:"input"`
	RoomName            string `json:"room_name,omitempty"`
	ParticipantIdentity string `json:"participant_identity,omitempty"`
	Status              string `json:"status"`
	Error               string `json:"error,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func trackLine(t *callstate.TrackInfo) *trackJSON {
	return &trackJSON{SID: t.SID, Type: t.Type.String(), Source: t.Source.String(), Name: t.Name, Muted: t.Muted, Width: t.Width, Height: t.Height, MimeType: t.MimeType}
}

func webhookLine(ev callstate.WebhookEvent) webhookJSON {
	l := webhookJSON{ID: ev.ID, Event: string(ev.Type), CreatedAt: ev.CreatedAt}
	l.Room, l.Participant = ev.Room, ev.Participant
	if ev.Track != nil {
		l.Track = trackLine(ev.Track)
	}
	if g := ev.Egress; g != nil {
		l.Egress = &egressJSON{ID: g.ID, RoomName: g.RoomName, Status: g.Status.String(), StartedAt: timePtr(g.StartedAt), EndedAt: timePtr(g.EndedAt), Error: g.Error}
	}
	if in := ev.Ingress; in != nil {
		l.Ingress = &ingressJSON{ID: in.ID, Name: in.Name, Input: in.Input.String(), RoomName: in.RoomName, ParticipantIdentity: in.ParticipantIdentity, Status: in.Status.String(), Error: in.Error}
	}
	return l
}

func runWebhookListen(ctx context.Context, args []string, e *env) int {
	ae := apiEnv(e)
	fs := newFlagSet(e, "webhook listen", "[flags]", `
Listen receives LiveKit's webhooks over HTTP on -addr, verifies each
(signature with the API secret, checksum of the body, validity period, and
replays), and prints every verified event as one JSON line on standard
output. Refused deliveries are reported on standard error, with the reason
only. It runs until interrupted.

Point the server's webhook configuration at it, for example in
livekit.yaml:

	webhook:
	  api_key: <the API key>
	  urls: ["http://127.0.0.1:8090/"]`)
	var key, secret, addr string
	envStringVar(fs, ae, &key, "api-key", envAPIKey, "API `key` that signs the webhooks; or $LIVEKIT_API_KEY")
	envStringVar(fs, ae, &secret, "api-secret", envAPISecret, "API `secret` that signs the webhooks; or $LIVEKIT_API_SECRET")
	fs.StringVar(&addr, "addr", "127.0.0.1:8090", "`address` to listen on")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if key == "" || secret == "" {
		return usageError(fs, "-api-key and -api-secret (or $%s and $%s, or $LIVEKIT_API_KEY and $LIVEKIT_API_SECRET) are required", envAPIKey, envAPISecret)
	}
	recv, err := callstate.NewWebhookReceiver(key, secret)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fail(e, "webhook listen", err)
	}
	var mu sync.Mutex // serialises the output lines
	events := recv.Handler(func(ev callstate.WebhookEvent) {
		mu.Lock()
		defer mu.Unlock()
		writeJSON(e.stdout, webhookLine(ev))
	})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Refusals are reported: wrap the writer to see the status.
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		events.ServeHTTP(sw, r)
		if sw.status != http.StatusOK {
			mu.Lock()
			fmt.Fprintf(e.stderr, "callstate webhook listen: refused a delivery from %s: HTTP %d %s\n", r.RemoteAddr, sw.status, sw.reason)
			mu.Unlock()
		}
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(e.stderr, "callstate webhook listen: listening on http://%s/\n", ln.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
		<-done
		return exitOK
	case err := <-done:
		if errors.Is(err, http.ErrServerClosed) {
			return exitOK
		}
		return fail(e, "webhook listen", err)
	}
}

// statusWriter records the status and the short reason a handler answers.
type statusWriter struct {
	http.ResponseWriter
	status int
	reason string
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status != http.StatusOK && len(w.reason) < 64 {
		w.reason += string(b)
	}
	return w.ResponseWriter.Write(b)
}
