package core

import "context"

// Submit submits a task of this type with args through c; see Client.Submit.
func (tt TaskType[A, R]) Submit(ctx context.Context, c *Client, args A, opts ...RequestOption) (string, error) {
	return c.Submit(ctx, tt.Request(args, opts...))
}

// Wait waits for task id through c and decodes its output (see
// Client.Wait and Decode): a failed or cancelled task gives a *TaskError,
// and a Wait error (ctx done, client closed) is returned as is.
func (tt TaskType[A, R]) Wait(ctx context.Context, c *Client, id string) (R, error) {
	res, err := c.Wait(ctx, id)
	if err != nil {
		var zero R
		return zero, err
	}
	return tt.Decode(res)
}
