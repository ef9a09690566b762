// Package examples holds callstate's runnable examples, one main package
// per directory:
//
//   - quickstart: two participants and every primitive, in a few lines.
//   - pollbot: a poll on session data, with votes merged concurrently.
//   - recorder: a hidden, receive-only participant that records a room to
//     a JSON-lines file, and prints a recording's timeline.
//   - scenario: an integration test that scripts a call with calltest.
//   - webhookbot: a server-side bot driven by LiveKit's webhooks (it
//     always starts its own server, configured to post to it).
//
// Each runs with "go run ./examples/<name>" against a local LiveKit server
// that it starts itself, or against an existing server given with -url,
// -api-key and -api-secret. The package's test runs each of them.
package examples
