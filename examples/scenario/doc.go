// Package scenario shows how an application's integration test scripts a
// call with package calltest: participants join a real LiveKit server,
// change state, send messages, and the test asserts on the events each one
// observes. See scenario_test.go; run it with
//
//	go test ./examples/scenario
package scenario
