#!/bin/sh
# Regenerates livekit.pb.go from livekit.proto. Run through `go generate`.
# protoc comes from the system (Debian: protobuf-compiler); protoc-gen-go is
# the version pinned by the tool directive in go.mod.
set -eu
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
protoc --plugin=protoc-gen-go="$bin/protoc-gen-go" --go_out=. --go_opt=paths=source_relative livekit.proto
