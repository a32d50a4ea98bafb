package app

// wire_gen.go is generated from the injectors in wire.go by Wire, pinned by
// the tool directive in tools/go.mod (a module of its own, so a service that
// requires dagq does not inherit Wire's dependencies); `make generate` runs
// this and `make check-generate` fails when the committed file is stale.
//
// Wire writes its own directive into wire_gen.go ("go run -mod=mod
// github.com/google/wire/cmd/wire"), which would resolve Wire through this
// module's go.mod and add its dependencies there; `make generate` skips it.
// The -modfile path is relative to this directory (go generate runs in it).
//go:generate go tool -modfile=../tools/go.mod wire
