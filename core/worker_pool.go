package core

import "sync"

// runnerPool keeps the goroutines that ran a worker's deliveries around for
// the next ones, instead of starting a goroutine per task and per batch: a
// fresh goroutine grows its stack again for every task (decoding, the
// handler, recording), which costs more than a no-op task itself (stack
// growth was a fifth of the memory benchmark's CPU without the pool).
type runnerPool struct {
	idle chan func()    // an idle runner receives its next work here
	stop chan struct{}  // closed when Run ends: idle runners exit
	wg   sync.WaitGroup // the runners
}

// start makes the pool's channels (in Run, so that they belong to Run's
// goroutine's synctest bubble, if any).
func (p *runnerPool) start() {
	p.idle = make(chan func())
	p.stop = make(chan struct{})
}

// close makes the idle runners exit and waits for them. Nothing may be
// spawned afterwards.
func (p *runnerPool) close() {
	close(p.stop)
	p.wg.Wait()
}

// spawn runs f in an idle runner, or a new one, counted in w.tasks like
// w.tasks.Go(f).
func (w *Worker) spawn(f func()) {
	w.tasks.Add(1)
	select {
	case w.pool.idle <- f:
		return
	default:
	}
	w.pool.wg.Add(1)
	go w.runner(f)
}

// runner runs f, then the work handed to it while idle, until the pool
// stops.
func (w *Worker) runner(f func()) {
	defer w.pool.wg.Done()
	for {
		f()
		w.tasks.Done()
		f = nil
		select {
		case f = <-w.pool.idle:
		case <-w.pool.stop:
			return
		}
	}
}
