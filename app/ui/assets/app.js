// dagq dashboard: keeps the server-rendered pages current.
//
// Every string from the server is set with textContent (never as HTML),
// except the fragments of the runs and workers lists, which the server
// renders with html/template. Polling pauses while the tab is hidden and a
// run page stops once its run is finished. window.dagqUI exposes what the
// browser tests and the latency measurement read.
(function () {
  'use strict';

  var body = document.body;
  var refresh = parseInt(body.dataset.refresh, 10) || 2000;
  var live = document.getElementById('live');
  var ui = window.dagqUI = { polls: 0, seen: {}, lastUpdate: 0, finished: false };

  // ---- shared ----

  function setLive(cls, text) {
    if (!live) { return; }
    live.hidden = false;
    live.className = 'live ' + cls;
    live.textContent = text;
  }

  function clock(d) {
    return d.toISOString().substring(11, 19);
  }

  function human(ms) {
    if (!(ms > 0)) { return ''; }
    if (ms < 1) { return '<1ms'; }
    if (ms < 1000) { return Math.round(ms) + 'ms'; }
    if (ms < 60000) { return (ms / 1000).toFixed(1) + 's'; }
    var s = Math.floor(ms / 1000);
    if (s < 3600) { return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's'; }
    return Math.floor(s / 3600) + 'h' + String(Math.floor(s / 60) % 60).padStart(2, '0') + 'm';
  }

  // poll calls tick (which returns a promise of whether to go on) every
  // interval while the page is visible; hidden, it waits for the page to
  // show again.
  function poll(tick, interval) {
    var timer = null;
    var stopped = false;
    function schedule(delay) {
      clearTimeout(timer);
      timer = setTimeout(run, delay);
    }
    function run() {
      timer = null;
      if (stopped) { return; }
      if (document.hidden) { setLive('paused', 'paused'); return; }
      Promise.resolve().then(tick).then(function (more) {
        ui.polls++;
        if (more === false) { stopped = true; return; }
        schedule(interval);
      }, function () {
        setLive('paused', 'reconnecting…');
        schedule(Math.min(interval * 3, 30000));
      });
    }
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden && !stopped && timer === null) { run(); }
    });
    schedule(interval);
  }

  function getJSON(url) {
    return fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } }).then(function (r) {
      if (!r.ok) { throw new Error(url + ': ' + r.status); }
      return r.json();
    });
  }

  function getText(url) {
    return fetch(url, { credentials: 'same-origin' }).then(function (r) {
      if (!r.ok) { throw new Error(url + ': ' + r.status); }
      return r.text();
    });
  }

  function text(el, value) {
    if (el && el.textContent !== value) { el.textContent = value; }
  }

  function stateSpan(state, label) {
    var s = document.createElement('span');
    s.className = 'state st-' + state;
    s.textContent = label === undefined ? state : label;
    return s;
  }

  // Forms that change something ask first.
  document.querySelectorAll('form[data-confirm]').forEach(function (f) {
    f.addEventListener('submit', function (e) {
      if (!window.confirm(f.dataset.confirm)) { e.preventDefault(); }
    });
  });

  // ---- a run ----

  function runPage() {
    var root = document.getElementById('run');
    if (!root) { return; }
    var api = root.dataset.api;
    var nodes = {}, rows = {}, edges = [];
    document.querySelectorAll('#dag g.node').forEach(function (g) { nodes[g.dataset.step] = g; });
    document.querySelectorAll('#steps tr[data-step]').forEach(function (tr) { rows[tr.dataset.step] = tr; });
    document.querySelectorAll('#dag path.edge').forEach(function (p) { edges.push(p); });
    var runStarted = null, running = {};

    document.querySelectorAll('#steps .show-output').forEach(function (b) {
      b.addEventListener('click', function () { loadOutput(b.closest('tr').dataset.step, b); });
    });

    function loadOutput(step, button) {
      button.disabled = true;
      getJSON(api + '/steps/' + encodeURIComponent(step) + '/output').then(function (o) {
        var code = rows[step].querySelector('.c-output code');
        text(code, o.found ? o.output : '(no stored output)');
        code.title = o.found ? o.output : '';
        button.remove();
      }, function () { button.disabled = false; });
    }

    function update(run) {
      var now = Date.now();
      var state = document.getElementById('run-state');
      state.className = 'state big st-' + run.state;
      text(state, run.state);
      text(document.getElementById('f-started'), run.started || '');
      text(document.getElementById('f-finished'), run.finished || '');
      runStarted = run.final ? null : Date.parse(run.started_at || run.created_at);
      if (run.final) { text(document.getElementById('f-duration'), run.duration || ''); }
      var worker = document.getElementById('f-worker');
      if (worker) { text(worker, (run.worker || '') + (run.attempt > 1 ? ' (execution ' + run.attempt + ')' : '')); }
      var health = document.getElementById('run-health');
      text(health, run.health || '');
      health.hidden = !run.health;
      health.classList.toggle('warn', run.health_status === 'FAILED');
      var err = document.getElementById('run-error');
      text(err, run.error || '');
      err.hidden = !run.error;

      var summary = document.getElementById('summary');
      var frag = document.createDocumentFragment();
      run.summary.forEach(function (c) {
        frag.appendChild(stateSpan(c.state, c.n + ' ' + c.state));
        frag.appendChild(document.createTextNode(' '));
      });
      summary.replaceChildren(frag);

      var states = {};
      running = {};
      run.steps.forEach(function (s) {
        states[s.name] = s.state;
        var final = s.state === 'succeeded' || s.state === 'failed' || s.state === 'cancelled' || s.state === 'skipped';
        if (final && !(s.name in ui.seen)) { ui.seen[s.name] = now; }
        var g = nodes[s.name];
        if (g) {
          var cls = 'node st-' + s.state;
          if (g.getAttribute('class') !== cls) { g.setAttribute('class', cls); }
          text(g.querySelector('.n-state'), s.state);
        }
        var tr = rows[s.name];
        if (!tr) { return; }
        var cell = tr.querySelector('.c-state');
        if (cell.textContent !== s.state) { cell.replaceChildren(stateSpan(s.state)); }
        text(tr.querySelector('.c-attempts'), s.attempts ? String(s.attempts) : '');
        text(tr.querySelector('.c-worker'), s.worker || '');
        text(tr.querySelector('.c-started'), s.started || '');
        if (s.state === 'running' && s.started_at) {
          running[s.name] = Date.parse(s.started_at);
        } else {
          text(tr.querySelector('.c-duration'), s.duration || '');
        }
        var e = tr.querySelector('.c-error .clip');
        text(e, s.error || '');
        e.title = s.error || '';
        var out = tr.querySelector('.c-output');
        var code = out.querySelector('code');
        if (s.output) { text(code, s.output); code.title = s.output; }
        var button = out.querySelector('.show-output');
        if (s.has_output && !button && !code.textContent) {
          button = document.createElement('button');
          button.type = 'button';
          button.className = 'link show-output';
          button.textContent = 'show';
          button.addEventListener('click', function () { loadOutput(s.name, button); });
          out.appendChild(button);
        } else if (button && s.output) {
          button.remove();
        }
      });
      edges.forEach(function (p) {
        var cls = 'edge st-' + (states[p.dataset.from] || 'pending');
        if (p.getAttribute('class') !== cls) { p.setAttribute('class', cls); }
      });
      tick();

      var list = document.getElementById('timeline');
      if (list.childElementCount !== run.timeline.length || run.final) {
        var items = document.createDocumentFragment();
        run.timeline.forEach(function (t) {
          var li = document.createElement('li');
          li.className = 'k-' + t.kind;
          var tm = document.createElement('time');
          tm.dateTime = t.time;
          tm.textContent = t.clock;
          var span = document.createElement('span');
          span.textContent = t.text;
          li.appendChild(tm);
          li.appendChild(span);
          items.appendChild(li);
        });
        list.replaceChildren(items);
      }

      var term = document.getElementById('terminate');
      if (term && !run.can_terminate) { term.remove(); }
      // Re-execution is offered once the run has finished.
      var rx = document.getElementById('reexecute');
      if (rx && run.final && run.can_reexecute) {
        var fromFailure = document.getElementById('reexecute-failure');
        if (fromFailure && run.state === 'succeeded') { fromFailure.remove(); }
        rx.hidden = false;
      }
      root.dataset.final = String(run.final);
      ui.lastUpdate = now;
      ui.finished = run.final;
      if (run.final) {
        setLive('', 'finished');
      } else {
        setLive('on', 'live · ' + clock(new Date(now)));
      }
      return !run.final;
    }

    // Durations of running steps and of the run tick between polls.
    function tick() {
      var now = Date.now();
      Object.keys(running).forEach(function (name) {
        text(rows[name].querySelector('.c-duration'), human(now - running[name]));
      });
      if (runStarted) { text(document.getElementById('f-duration'), human(now - runStarted)); }
    }
    setInterval(function () { if (!document.hidden) { tick(); } }, 1000);

    if (root.dataset.final === 'true') {
      setLive('', 'finished');
      ui.finished = true;
      return;
    }
    setLive('on', 'live');
    getJSON(api).then(update).then(function (more) {
      if (more) { poll(function () { return getJSON(api).then(update); }, refresh); }
    }, function () { poll(function () { return getJSON(api).then(update); }, refresh); });
  }

  // ---- lists refreshed as server-rendered fragments ----

  function fragmentPage(containerID, interval) {
    var box = document.getElementById(containerID);
    if (!box) { return; }
    var url = location.pathname + (location.search ? location.search + '&' : '?') + 'fragment=rows';
    setLive('on', 'live');
    poll(function () {
      return getText(url).then(function (html) {
        if (box.innerHTML !== html) { box.innerHTML = html; }
        ui.lastUpdate = Date.now();
        setLive('on', 'live · ' + clock(new Date()));
      });
    }, interval);
  }

  // ---- queues ----

  var series = ['tasks', 'runs', 'tasks-dlq', 'runs-dlq'];
  var svgNS = 'http://www.w3.org/2000/svg';

  function svg(name, attrs, parent) {
    var el = document.createElementNS(svgNS, name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(el); }
    return el;
  }

  function drawChart(box, data) {
    var W = Math.max(box.clientWidth - 32, 300), H = 180, L = 44, R = 10, T = 10, B = 24;
    var root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img' });
    var samples = data.samples || [];
    var now = Date.now(), span = data.history_ms || 900000, from = now - span;
    var top = 1;
    samples.forEach(function (s) {
      s.queues.forEach(function (q) { top = Math.max(top, q.visible + q.in_flight + q.delayed); });
    });
    var step = Math.pow(10, Math.floor(Math.log10(top)));
    top = Math.ceil(top / step) * step;
    var x = function (t) { return L + (W - L - R) * (t - from) / span; };
    var y = function (v) { return T + (H - T - B) * (1 - v / top); };
    [0, 0.5, 1].forEach(function (f) {
      var v = Math.round(top * f);
      svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: f === 0 ? 'axis' : 'grid-line' }, root);
      var label = svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, root);
      label.textContent = String(v);
    });
    [15, 10, 5, 0].forEach(function (m) {
      var label = svg('text', { x: x(now - m * 60000), y: H - 6, 'text-anchor': m === 0 ? 'end' : 'middle' }, root);
      label.textContent = m === 0 ? 'now' : '−' + m + ' min';
    });
    if (samples.length === 0) {
      svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, root).textContent = 'no samples yet';
    }
    series.forEach(function (key) {
      var pts = [];
      samples.forEach(function (s) {
        s.queues.forEach(function (q) {
          if (q.key === key && !q.error) {
            pts.push(x(s.t).toFixed(1) + ',' + y(q.visible + q.in_flight + q.delayed).toFixed(1));
          }
        });
      });
      if (pts.length === 1) { pts.push((x(now)).toFixed(1) + ',' + pts[0].split(',')[1]); }
      if (pts.length) { svg('polyline', { points: pts.join(' '), class: 'series q-' + key }, root); }
    });
    box.replaceChildren(root);
  }

  function queuesPage() {
    var box = document.getElementById('chart');
    if (!box) { return; }
    function update(data) {
      drawChart(box, data);
      var last = data.samples[data.samples.length - 1];
      if (last) {
        last.queues.forEach(function (q) {
          var tr = document.querySelector('#depths tr[data-queue="' + q.key + '"]');
          if (!tr || q.error) { return; }
          ['visible', 'in_flight', 'delayed'].forEach(function (k) { text(tr.querySelector('.c-' + k), String(q[k])); });
        });
      }
      ui.lastUpdate = Date.now();
      setLive('on', 'live · ' + clock(new Date()));
    }
    var url = '/api/queues';
    getJSON(url).then(update);
    poll(function () { return getJSON(url).then(update); }, refresh * 5);
  }

  switch (body.dataset.page) {
    case 'run': runPage(); break;
    case 'runs': fragmentPage('runs-list', Math.max(refresh, 5000)); break;
    case 'workers': fragmentPage('workers-list', Math.max(refresh, 10000)); break;
    case 'queues': queuesPage(); break;
  }
}());
