package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// Message signing over SQS and S3 (the emulators): the signature attribute
// travels through the SQS adapter, also on a claim-check message (the
// envelope in S3), and workers with signing keys run signed tasks — steps
// and launched runs — and refuse unsigned ones without running them.
func TestSQS_Signing(t *testing.T) {
	cfg, flags := sqsEnv(t)
	r := dagq(t, append([]string{"queue", "init"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)

	k1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	k2 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	signed := cfg
	signed.Signing.KeyID, signed.Signing.Keys = "k2", "k1="+k1+",k2="+k2
	require.NoError(t, signed.Validate())

	rt, err := app.New(signed, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, err := rt.StartWorkers(ctx, 1)
	require.NoError(t, err)
	defer func() { require.NoError(t, pool.Stop()) }()
	runPool, err := rt.StartRunWorkers(ctx, 1)
	require.NoError(t, err)
	defer func() { require.NoError(t, runPool.Stop()) }()

	r = inCtx(t, ctx, rt, "launch", examples+"diamond.yaml", "--wait")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "4 succeeded")

	// A large argument goes through S3; the signature covers it.
	big := strings.Repeat("x", 300<<10)
	id, err := rt.Client.Submit(ctx, core.Request{Task: "echo", Args: big})
	require.NoError(t, err)
	res, err := rt.Client.Wait(ctx, id)
	require.NoError(t, err)
	require.Equal(t, ports.StateSucceeded, res.State, res.Error)

	// A client without signing: its task is refused, never run.
	plain, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer plain.Close()
	id, err = plain.Client.Submit(ctx, core.Request{Task: "echo", Args: "unsigned"})
	require.NoError(t, err)
	res, err = plain.Client.Wait(ctx, id)
	require.NoError(t, err)
	require.Equal(t, ports.StateFailed, res.State)
	require.Equal(t, `message refused, not run: message signature check failed: signature missing (no "dagq-sig" attribute); `+
		`this worker only runs messages signed with one of its keys (k1, k2)`, res.Error)
	require.Empty(t, res.Output)
	require.Zero(t, res.Attempts, "never run")
}
