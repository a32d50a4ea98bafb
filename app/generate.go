package app

// wire_gen.go is generated from the injectors in wire.go by Wire, pinned by
// the tool directive in go.mod; `make generate` runs this and `make
// check-generate` fails when the committed file is stale.
//go:generate go tool wire
