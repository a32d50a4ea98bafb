package core

import "sync"

// runnerPool keeps the goroutines that ran a worker's deliveries around for
// the next ones, instead of starting a goroutine per task and per batch: a
// fresh goroutine grows its stack again for every task (decoding, the
// handler, recording), which cost more than a no-op task itself.
type runnerPool struct {
	idle chan runnable  // an idle runner receives its next work here
	stop chan struct{}  // closed when Run ends: idle runners exit
	wg   sync.WaitGroup // the runners
}

// runnable is work for a runner: a received batch (*receivedBatch), a
// helper taking the jobs of one (*batchJobs) or any function (runFunc).
// Handing over a pointer that implements it costs no allocation, unlike a
// closure per task.
type runnable interface {
	run(w *Worker)
}

// runFunc makes a function runnable.
type runFunc func()

func (f runFunc) run(*Worker) { f() }

// start makes the pool's channels (in Run, so that they belong to Run's
// goroutine's synctest bubble, if any).
func (p *runnerPool) start() {
	p.idle = make(chan runnable)
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
func (w *Worker) spawn(f func()) { w.start(runFunc(f)) }

// start runs r in an idle runner, or a new one, counted in w.tasks.
func (w *Worker) start(r runnable) {
	w.tasks.Add(1)
	select {
	case w.pool.idle <- r:
		return
	default:
	}
	w.pool.wg.Add(1)
	go w.runner(r)
}

// runner runs r, then the work handed to it while idle, until the pool
// stops.
func (w *Worker) runner(r runnable) {
	defer w.pool.wg.Done()
	for {
		r.run(w)
		w.tasks.Done()
		r = nil
		select {
		case r = <-w.pool.idle:
		case <-w.pool.stop:
			return
		}
	}
}
