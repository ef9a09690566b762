//go:build !unix

package lkserver

import "context"

// lockFile does not lock on this platform: concurrent first runs may each
// install the server.
func lockFile(context.Context, string) (func(), error) { return func() {}, nil }
