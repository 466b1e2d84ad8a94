// aiwatch dashboard: progressive enhancement only. Every page works without this script; with
// it, times show in the reader's zone, uptime bars get day-by-day tooltips (mouse and keyboard),
// and live pages refresh their content in place. It talks to nothing but this origin.
(function () {
  'use strict';

  var fmt = function (options) {
    try { return new Intl.DateTimeFormat(undefined, options); } catch (e) { return null; }
  };
  var timeOnly = fmt({ hour: '2-digit', minute: '2-digit' });
  var dayTime = fmt({ day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
  var fullTime = fmt({ day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit' });
  var dayUtc = fmt({ weekday: 'short', day: 'numeric', month: 'short', timeZone: 'UTC' });

  function localTimes(root) {
    if (!timeOnly) return;
    var now = new Date();
    root.querySelectorAll('time[datetime]').forEach(function (t) {
      var d = new Date(t.getAttribute('datetime'));
      if (isNaN(d.getTime())) return;
      var f = d.toDateString() === now.toDateString() ? timeOnly
        : d.getFullYear() === now.getFullYear() ? dayTime : fullTime;
      t.textContent = f.format(d);
      t.title = d.toString();
    });
  }

  // One tooltip for the whole page, also read out politely to screen readers.
  var tip = document.createElement('div');
  tip.className = 'tip';
  tip.id = 'aiw-tip';
  tip.setAttribute('role', 'tooltip');
  tip.hidden = true;
  var live = document.createElement('div');
  live.className = 'vh';
  live.setAttribute('aria-live', 'polite');

  // A bar covers days x / 4 to (x + width + 1) / 4; its text is its title without the dates.
  function dayInfo(svg, i) {
    var rects = svg.querySelectorAll('rect:not(.cur)');
    for (var k = 0; k < rects.length; k++) {
      var start = +rects[k].getAttribute('x') / 4;
      var n = (+rects[k].getAttribute('width') + 1) / 4;
      if (i >= start && i < start + n) return rects[k]._text || '';
    }
    return 'no data';
  }

  function dayName(svg, i) {
    var parts = (svg.getAttribute('data-start') || '').split('-').map(Number);
    if (parts.length !== 3 || !dayUtc) return '';
    return dayUtc.format(new Date(Date.UTC(parts[0], parts[1] - 1, parts[2] + i)));
  }

  function showDay(svg, i, announce) {
    var days = svg._days;
    i = Math.max(0, Math.min(days - 1, i));
    svg._day = i;
    var box = svg.getBoundingClientRect();
    var x = box.left + (i * 4 + 1.5) / (days * 4 - 1) * box.width;
    var label = dayName(svg, i);
    var text = dayInfo(svg, i);
    tip.textContent = '';
    var b = document.createElement('b');
    b.textContent = label;
    tip.appendChild(b);
    tip.appendChild(document.createTextNode(text));
    tip.style.left = Math.max(80, Math.min(window.innerWidth - 80, x)) + 'px';
    tip.style.top = box.top + 'px';
    tip.hidden = false;
    var cur = svg.querySelector('rect.cur');
    if (!cur) {
      cur = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
      cur.setAttribute('class', 'cur');
      cur.setAttribute('y', '0');
      cur.setAttribute('height', '30');
      cur.setAttribute('width', '3');
      svg.appendChild(cur);
    }
    cur.setAttribute('x', String(i * 4));
    if (announce) live.textContent = label + ': ' + text;
  }

  function hideDay(svg) {
    tip.hidden = true;
    var cur = svg.querySelector('rect.cur');
    if (cur) cur.remove();
  }

  function enhanceBars(root) {
    root.querySelectorAll('svg.bars').forEach(function (svg) {
      // The script's tooltip replaces the native one; the image keeps its full aria-label.
      svg.querySelectorAll('title').forEach(function (t) {
        var text = t.textContent;
        t.parentNode._text = text.slice(text.indexOf(': ') + 2);
        t.remove();
      });
      svg.setAttribute('tabindex', '0');
      var days = svg._days = (+svg.viewBox.baseVal.width + 1) / 4;
      var at = function (e) {
        var box = svg.getBoundingClientRect();
        return Math.floor((e.clientX - box.left) / box.width * (days * 4 - 1) / 4);
      };
      svg.addEventListener('pointermove', function (e) { showDay(svg, at(e), false); });
      svg.addEventListener('pointerleave', function () { if (document.activeElement !== svg) hideDay(svg); });
      svg.addEventListener('focus', function () { showDay(svg, svg._day == null ? days - 1 : svg._day, true); });
      svg.addEventListener('blur', function () { hideDay(svg); });
      svg.addEventListener('keydown', function (e) {
        var i = svg._day == null ? days - 1 : svg._day;
        var next = { ArrowLeft: i - 1, ArrowRight: i + 1, Home: 0, End: days - 1 }[e.key];
        if (e.key === 'Escape') { hideDay(svg); return; }
        if (next == null) return;
        e.preventDefault();
        showDay(svg, next, true);
      });
    });
  }

  function enhance(root) {
    localTimes(root);
    enhanceBars(root);
  }

  // Live pages: fetch this same page again and swap the content, keeping what the reader opened.
  function autoRefresh() {
    var base = +document.body.getAttribute('data-refresh');
    if (!base || !window.fetch || !window.DOMParser) return;
    var seconds = base;
    try {
      var chosen = +window.localStorage.getItem('aiwatch.refresh');
      if (chosen) seconds = chosen;
    } catch (e) { /* Storage may be off; the default stands. */ }
    seconds = Math.max(2, Math.min(3600, seconds));
    var paused = false;
    var toggled = {};
    var main = document.getElementById('main');
    var keyOf = function (d) { var s = d.querySelector('summary'); return s ? s.textContent.trim().slice(0, 120) : ''; };
    main.addEventListener('toggle', function (e) {
      if (e.target.tagName === 'DETAILS') toggled[keyOf(e.target)] = e.target.open;
    }, true);

    var footer = document.querySelector('footer p');
    var button = document.createElement('button');
    button.type = 'button';
    button.className = 'refresh-ctl';
    var label = function () {
      button.textContent = paused ? 'Auto-refresh paused' : 'Auto-refresh every ' + seconds + ' s';
      button.setAttribute('aria-pressed', String(!paused));
    };
    button.addEventListener('click', function () { paused = !paused; label(); });
    label();
    if (footer) footer.appendChild(button);

    var headline = function (root) { var h = root.querySelector('#headline'); return h ? h.textContent : ''; };
    var busy = false;
    var tick = function () {
      if (paused || busy || document.hidden) return;
      var active = document.activeElement;
      if (active && active !== main && main.contains(active) && !(active.matches && active.matches('svg.bars'))) return;
      busy = true;
      fetch(window.location.href, { headers: { Accept: 'text/html' }, cache: 'no-store', credentials: 'same-origin' })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var doc = new DOMParser().parseFromString(html, 'text/html');
          var fresh = doc.getElementById('main');
          if (!fresh) return;
          var before = headline(main);
          main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
          main.querySelectorAll('details').forEach(function (d) {
            var k = keyOf(d);
            if (Object.prototype.hasOwnProperty.call(toggled, k)) d.open = toggled[k];
          });
          document.title = doc.title;
          tip.hidden = true;
          enhance(main);
          var after = headline(main);
          if (after && after !== before) live.textContent = after;
        })
        .catch(function () { /* Offline for a moment: try again next time. */ })
        .then(function () { busy = false; });
    };
    window.setInterval(tick, seconds * 1000);
    document.addEventListener('visibilitychange', function () { if (!document.hidden) tick(); });
  }

  function start() {
    document.body.appendChild(tip);
    document.body.appendChild(live);
    enhance(document);
    autoRefresh();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
