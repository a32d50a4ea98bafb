// Command dagq runs jobs — DAGs of steps described in YAML job files — on
// dagq workers, with the built-in tasks (echo, sleep, fail, hash, concat,
// transform). See docs/cli.md, or run "dagq --help".
//
// To add your own tasks, write a main like this one that registers them
// before calling cli.Main.
package main

import (
	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/core"
)

func main() {
	reg := core.NewRegistry()
	builtin.MustRegister(reg)
	cli.Main(reg)
}
