// The lanesync store dashboard: one hand-written script, no build step, no library.
//
// - Signs in with the lane's API token: the token is kept in this tab's sessionStorage and sent
//   as `Authorization: Bearer` on every data call; it never goes into a URL.
// - Follows the change feed (GET /v1/events) with fetch() streaming, because EventSource cannot
//   send headers; reconnects with Last-Event-ID so no record event is missed.
// - Asks for the status every 2 s besides, so a lane going down shows even when no event says so,
//   and everything else every 2 s while the feed is not live (every 30 s while it is).
// - Puts every value into the page as text (textContent), never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "lanesync.dashboard.token";
  const TICK_MS = 2000; // status refresh: a lane's up/down shows within this
  const FULL_REFRESH_LIVE_MS = 30000; // with a live feed the rest is refreshed on events
  const FEED_RETRY_MS = [1000, 2000, 5000, 10000]; // backoff after a broken feed
  const FEED_ABSENT_RETRY_MS = 30000; // a lane without /v1/events (an older version)
  const FEED_SILENCE_MS = 45000; // three missed keep-alives (the lane sends one every 15 s)
  const SALES_PAGE = 500;
  const RECENT_SALES = 20;
  const STOCK_ROWS = 50;
  const EVENTS_SHOWN = 30;
  const RECORD_EVENTS = new Set([
    "sale", "void", "receipt", "adjustment", "price", "revocation", "day_close",
  ]);
  const EVENT_BURST_MS = 250; // events come in bursts (a peer's catch-up): one refresh each
  // Listing a busy day's sales takes several calls: at most once per tick, however many sales
  // arrive (each still shows at once in Recent sales, from its event).
  const MIN_REFRESH_MS = { sales: TICK_MS };
  const STATUS_EVENTS = new Set(["peer_up", "peer_down", "leader", "cloud_link"]);
  const NO_CLOUD = "no cloud configured";

  const $ = (id) => document.getElementById(id);

  const state = {
    token: null,
    session: 0, // a new one per sign-in: loops of an earlier one stop
    lastEventId: null,
    feed: null, // the AbortController of the feed being read
    feedLive: false,
    ticker: null,
    lastFullMs: 0,
    clockSkewMs: 0, // the lane's clock minus this browser's
    lanes: new Map(), // every lane seen since sign-in: terminal id -> last row shown
    cloudIds: new Set(), // terminal ids seen connected with the cloud's role
    sales: new Map(), // recent sales by id
    today: null, // the store's business day, as the lane said last
    salesListed: true, // false: this lane has no GET /v1/sales
    stock: [],
    busy: new Set(), // refreshes in flight (one of each at a time)
    pending: new Set(), // refreshes asked for by events, run once (debounced)
    pendingTimer: null,
    lastRefreshMs: {}, // per refresh, when it last started
  };

  class Unauthorized extends Error {}
  class Stale extends Error {} // the answer came after a sign-out: nobody may see it

  // -- talking to the lane ------------------------------------------------------------------

  async function api(path) {
    const session = state.session;
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${state.token}` },
      cache: "no-store",
    });
    if (state.session !== session) throw new Stale();
    if (response.status === 401) throw new Unauthorized("the lane refused the token");
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { status: response.status, ok: response.ok, body };
  }

  function errorText(answer) {
    const error = answer.body && answer.body.error;
    return error ? `${error.code}: ${error.message}` : `HTTP ${answer.status}`;
  }

  // -- small renderers (text only) ----------------------------------------------------------

  function text(id, value) {
    $(id).textContent = value;
  }

  function cell(value, className) {
    const td = document.createElement("td");
    td.textContent = value;
    if (className) td.className = className;
    return td;
  }

  function row(cells, data) {
    const tr = document.createElement("tr");
    tr.append(...cells);
    for (const [key, value] of Object.entries(data || {})) tr.dataset[key] = value;
    return tr;
  }

  function fill(table, rows) {
    $(table).querySelector("tbody").replaceChildren(...rows);
  }

  function note(id, message) {
    const element = $(id);
    element.textContent = message || "";
    element.hidden = !message;
  }

  function money(cents) {
    if (typeof cents !== "number") return "–";
    const sign = cents < 0 ? "-" : "";
    const whole = Math.trunc(Math.abs(cents) / 100);
    const part = String(Math.abs(cents) % 100).padStart(2, "0");
    return `${sign}${whole}.${part}`;
  }

  function bytes(count) {
    if (typeof count !== "number") return "–";
    if (count < 1024) return `${count} B`;
    if (count < 1024 * 1024) return `${(count / 1024).toFixed(1)} KiB`;
    return `${(count / 1024 / 1024).toFixed(1)} MiB`;
  }

  function laneNow() {
    return Date.now() + state.clockSkewMs;
  }

  function clock(ms) {
    return typeof ms === "number" ? new Date(ms).toLocaleTimeString() : "–";
  }

  function heard(ms) {
    if (typeof ms !== "number") return "never";
    const seconds = Math.max(0, Math.round((laneNow() - ms) / 1000));
    const ago = seconds < 120 ? `${seconds} s ago` : `${Math.round(seconds / 60)} min ago`;
    return `${clock(ms)} (${ago})`;
  }

  function showBoardError(message) {
    note("board-error", message);
  }

  // -- panels -------------------------------------------------------------------------------

  function renderStatus(status) {
    text(
      "identity",
      `store ${status.store_id} · lane ${status.terminal_id} (${status.role}) · ` +
        `${status.records} records · digest ${String(status.digest).slice(0, 12)}`,
    );
    text("version", `lanesync ${status.version}`);
    text("leader", status.leader || "none elected");
    text("term", status.term === null || status.term === undefined ? "–" : String(status.term));
    renderCloud(status.cloud);
    renderLanes(status);
  }

  function renderCloud(cloud) {
    if (!cloud) {
      text("cloud-link", NO_CLOUD);
      text("cloud-pending", "–");
      text("cloud-ack", "–");
      $("cloud-link").dataset.link = "none";
      return;
    }
    const link = cloud.connected ? "up" : "down";
    const reach = cloud.connected || cloud.reachable ? "" : " (unreachable)";
    text("cloud-link", `${link}${reach} · ${cloud.url}`);
    $("cloud-link").dataset.link = link;
    text("cloud-pending", cloud.pending_bytes === null ? "unknown yet" : bytes(cloud.pending_bytes));
    text("cloud-ack", heard(cloud.last_ack_ms));
  }

  function renderLanes(status) {
    // The cloud is a peer too, but not a lane: known by its role while connected, by its
    // address (the status's cloud URL) or by having been seen connected, when not.
    for (const link of status.connections || []) {
      if (link.role === "cloud") state.cloudIds.add(link.terminal_id);
    }
    const cloudUrl = status.cloud ? status.cloud.url : null;
    const seen = new Set();
    for (const peer of status.peers || []) {
      const id = peer.terminal_id || (peer.addresses && peer.addresses[0]) || "?";
      if (state.cloudIds.has(id) || (cloudUrl && (peer.addresses || []).includes(cloudUrl))) {
        continue;
      }
      seen.add(id);
      const known = state.lanes.get(id) || {};
      state.lanes.set(id, {
        id,
        connected: Boolean(peer.connected),
        lastSeenMs: peer.last_seen_ms !== null ? peer.last_seen_ms : known.lastSeenMs,
        unacked: peer.unacked_bytes,
        note: peer.last_error || "",
      });
    }
    // A lane that dialled this one is listed only while connected: keep it, shown as down.
    for (const [id, lane] of state.lanes) {
      if (!seen.has(id)) state.lanes.set(id, { ...lane, connected: false, unacked: null });
    }
    const selfNotes = [];
    if (status.revoked) selfNotes.push("revoked by the store: it refuses every sale");
    if (status.isolated_since) selfNotes.push(`isolated since ${clock(status.isolated_since)}`);
    const rows = [
      row(
        [
          cell(`${status.terminal_id} (this lane)`),
          cell("up", "link"),
          cell("now"),
          cell("–"),
          cell(selfNotes.join("; ")),
        ],
        { lane: status.terminal_id, link: "up" },
      ),
    ];
    const others = [...state.lanes.values()].sort((a, b) => a.id.localeCompare(b.id));
    for (const lane of others) {
      const link = lane.connected ? "up" : "down";
      rows.push(
        row(
          [
            cell(lane.id),
            cell(link, "link"),
            cell(heard(lane.lastSeenMs)),
            cell(bytes(lane.unacked), "num"),
            cell(lane.note),
          ],
          { lane: lane.id, link },
        ),
      );
    }
    fill("lanes", rows);
    $("lanes-empty").hidden = others.length > 0;
  }

  // What the page shows is this lane's view: while it does not answer, say so in its row.
  function markThisLaneDown() {
    const row = $("lanes").querySelector("tbody tr");
    if (!row) return;
    row.dataset.link = "down";
    row.cells[1].textContent = "down";
    row.cells[2].textContent = "not answering";
  }

  async function refreshStatus() {
    const answer = await api("/v1/status");
    if (!answer.ok) throw new Error(errorText(answer));
    renderStatus(answer.body);
  }

  async function listToday() {
    const today = await api("/v1/dashboard");
    if (!today.ok) throw new Error(errorText(today));
    state.clockSkewMs = today.body.now_ms - Date.now();
    const day = today.body.business_day;
    state.today = day;
    text("today-day", day);
    const sales = [];
    let cursor = null;
    do {
      const query = new URLSearchParams({ day, limit: String(SALES_PAGE) });
      if (cursor) query.set("cursor", cursor);
      const page = await api(`/v1/sales?${query}`);
      if (page.status === 404 || page.status === 405) return null; // no sales listing here
      if (!page.ok) throw new Error(errorText(page));
      sales.push(...page.body.sales);
      cursor = page.body.next_cursor;
    } while (cursor);
    return sales;
  }

  async function refreshSales() {
    const sales = await listToday();
    state.salesListed = sales !== null;
    if (sales === null) {
      text("today-count", "–");
      text("today-net", "–");
      text("today-voided", "–");
      note("today-note", "This lane's API has no sales listing (GET /v1/sales).");
      note("sales-note", "Only sales seen on the change feed since sign-in are listed.");
    } else {
      const kept = sales.filter((s) => !s.voided);
      text("today-count", String(kept.length));
      text("today-net", money(kept.reduce((sum, s) => sum + s.total_cents, 0)));
      text("today-voided", String(sales.length - kept.length));
      note("today-note", "");
      note("sales-note", "");
      // Listed oldest first per round: a peer's late sale may come after newer ones.
      state.sales = new Map(sales.map((s) => [s.id, s]));
      keepRecentSales();
    }
    renderSales();
  }

  function keepRecentSales() {
    const newest = [...state.sales.values()]
      .sort((a, b) => b.at_ms - a.at_ms || b.id.localeCompare(a.id))
      .slice(0, RECENT_SALES);
    state.sales = new Map(newest.map((sale) => [sale.id, sale]));
  }

  function renderSales() {
    const recent = [...state.sales.values()]
      .sort((a, b) => b.at_ms - a.at_ms || b.id.localeCompare(a.id))
      .slice(0, RECENT_SALES);
    fill(
      "sales",
      recent.map((sale) =>
        row(
          [
            cell(sale.id),
            cell(clock(sale.at_ms)),
            cell((sale.lines || []).map((l) => `${l.qty} × ${l.sku}`).join(", ")),
            cell(money(sale.total_cents), "num"),
            cell(sale.voided ? `voided (${sale.void_id || "?"})` : "sold"),
          ],
          { sale: sale.id, voided: sale.voided ? "yes" : "no" },
        ),
      ),
    );
    if (state.salesListed) note("sales-note", recent.length ? "" : "No sale today yet.");
  }

  async function refreshAlerts() {
    const answer = await api("/v1/alerts");
    if (!answer.ok) throw new Error(errorText(answer));
    const oversold = answer.body.oversold || [];
    fill(
      "oversold",
      oversold.map((item) =>
        row(
          [cell(item.sku), cell(String(item.on_hand), "num"), cell((item.sales || []).join(", "))],
          { sku: item.sku },
        ),
      ),
    );
    $("oversold-none").hidden = oversold.length > 0;
    const problems = Object.entries(answer.body.integrity || {});
    const integrity = $("integrity-state");
    integrity.textContent = problems.length
      ? "Problems found (lanesync verify lists them in full):"
      : "Every record checks out (signatures, chains, roles).";
    integrity.dataset.ok = problems.length ? "no" : "yes";
    $("integrity").replaceChildren(
      ...problems.map(([kind, items]) => {
        const li = document.createElement("li");
        li.textContent = `${kind.replaceAll("_", " ")}: ${items.length} · ${JSON.stringify(items[0])}`;
        return li;
      }),
    );
  }

  async function refreshStock() {
    const answer = await api("/v1/stock");
    if (!answer.ok) throw new Error(errorText(answer));
    state.stock = answer.body.items || [];
    renderStock();
  }

  function renderStock() {
    const query = $("stock-query").value.trim().toLowerCase();
    const matches = state.stock.filter((item) => item.sku.toLowerCase().includes(query));
    fill(
      "stock",
      matches.slice(0, STOCK_ROWS).map((item) =>
        row([cell(item.sku), cell(String(item.on_hand), item.on_hand < 0 ? "num neg" : "num")], {
          sku: item.sku,
        }),
      ),
    );
    const more = matches.length - STOCK_ROWS;
    note(
      "stock-note",
      matches.length === 0
        ? "No SKU matches."
        : more > 0
          ? `${more} more; narrow the search.`
          : "",
    );
  }

  // The Z-report of the last closed day (issue #17's shape). A lane without day closes
  // answers 404 to /v1/days: the panel stays hidden.
  async function refreshReport() {
    const panel = $("zreport-panel");
    const days = await api("/v1/days");
    const closed = days.ok
      ? (days.body.days || []).filter((d) => d.state === "closed" || d.state === "sealed")
      : [];
    if (closed.length === 0) {
      panel.hidden = true;
      return;
    }
    const day = closed[closed.length - 1].day;
    const answer = await api(`/v1/reports/${encodeURIComponent(day)}`);
    if (!answer.ok) throw new Error(errorText(answer));
    renderReport(answer.body);
    panel.hidden = false;
  }

  function renderReport(report) {
    const totals = report.totals || {};
    text("zreport-day", report.day);
    const missing = report.missing_terminals || [];
    text(
      "zreport-state",
      (report.complete ? "Complete: every lane closed the day." : `Waiting for ${missing.join(", ")}.`) +
        (report.sealed ? " Sealed." : ""),
    );
    text("zreport-sales", String(totals.sales));
    text("zreport-voids", String(totals.voids));
    text("zreport-gross", money(totals.gross_cents));
    text("zreport-voided", money(totals.voided_cents));
    text("zreport-net", money(totals.net_cents));
    fill(
      "zreport-lanes",
      (report.terminals || []).map((lane) =>
        row(
          [
            cell(lane.terminal_id),
            cell(`${lane.first_seq}-${lane.last_seq}`),
            cell(String(lane.sales), "num"),
            cell(String(lane.voids), "num"),
            cell(money(lane.gross_cents), "num"),
            cell(money(lane.voided_cents), "num"),
            cell(money(lane.net_cents), "num"),
          ],
          { lane: lane.terminal_id },
        ),
      ),
    );
    fill(
      "zreport-skus",
      (report.skus || []).map((item) =>
        row(
          [cell(item.sku), cell(String(item.units), "num"), cell(money(item.net_cents), "num")],
          { sku: item.sku },
        ),
      ),
    );
    text("zreport-hash", `report hash ${report.report_hash}`);
  }

  const REFRESHERS = {
    status: refreshStatus,
    sales: refreshSales,
    alerts: refreshAlerts,
    stock: refreshStock,
    report: refreshReport,
  };

  async function refresh(name) {
    if (state.busy.has(name) || !state.token) return;
    state.busy.add(name);
    state.lastRefreshMs[name] = Date.now();
    try {
      await REFRESHERS[name]();
      showBoardError("");
    } catch (error) {
      if (error instanceof Stale) return;
      if (error instanceof Unauthorized) {
        signOut("The lane refused the token (it may have been replaced); sign in again.");
      } else {
        showBoardError(`This lane did not answer (${error.message}); retrying.`);
        if (name === "status") markThisLaneDown();
      }
    } finally {
      state.busy.delete(name);
    }
  }

  function refreshAll() {
    state.lastFullMs = Date.now();
    return Promise.all(Object.keys(REFRESHERS).map(refresh));
  }

  // Events arrive in bursts (a peer's catch-up): refresh each panel once per burst.
  function refreshSoon(...names) {
    for (const name of names) state.pending.add(name);
    if (state.pendingTimer === null) state.pendingTimer = setTimeout(runPending, EVENT_BURST_MS);
  }

  function runPending() {
    state.pendingTimer = null;
    const now = Date.now();
    let next = Infinity;
    for (const name of [...state.pending]) {
      const due = (state.lastRefreshMs[name] || 0) + (MIN_REFRESH_MS[name] || 0);
      if (due <= now && !state.busy.has(name)) {
        state.pending.delete(name);
        refresh(name);
      } else {
        next = Math.min(next, Math.max(due - now, EVENT_BURST_MS));
      }
    }
    if (state.pending.size) state.pendingTimer = setTimeout(runPending, next);
  }

  // -- the change feed ----------------------------------------------------------------------

  // Server-Sent Events, parsed as the HTML standard says (fields id, event, data; comments).
  class FeedParser {
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.buffer = "";
      this.startEvent();
    }

    startEvent() {
      this.type = "";
      this.data = [];
      this.id = null;
    }

    push(chunk) {
      this.buffer += chunk;
      // A chunk may end between the \r and the \n of one line end: hold that \r back until
      // the next chunk says which it is, or it would end the line and then an empty one.
      const held = this.buffer.endsWith("\r") ? "\r" : "";
      const lines = this.buffer.slice(0, this.buffer.length - held.length).split(/\r\n|\r|\n/);
      this.buffer = lines.pop() + held;
      for (const line of lines) this.line(line);
    }

    line(line) {
      if (line === "") {
        if (this.data.length) this.onEvent(this.type || "message", this.data.join("\n"), this.id);
        this.startEvent();
        return;
      }
      if (line.startsWith(":")) return; // a keep-alive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") this.data.push(value);
      else if (field === "event") this.type = value;
      else if (field === "id" && !value.includes("\0")) this.id = value;
    }
  }

  function setFeed(kind, message) {
    const element = $("feed-state");
    element.dataset.state = kind;
    element.textContent = message;
    state.feedLive = kind === "live";
  }

  function onEvent(type, data, id) {
    if (id !== null) state.lastEventId = id;
    let body = {};
    try {
      body = JSON.parse(data);
    } catch (_) {
      return; // not ours to show
    }
    logEvent(type, body);
    // The feed first replays every record event the lane holds: only today's sales are recent.
    if (type === "sale" && typeof body.id === "string" && (!state.today || body.day === state.today)) {
      state.sales.set(body.id, { ...body, voided: false, void_id: null });
      keepRecentSales();
      renderSales();
    } else if (type === "void" && state.sales.has(body.sale_id)) {
      state.sales.set(body.sale_id, { ...state.sales.get(body.sale_id), voided: true, void_id: body.id });
      renderSales();
    }
    if (RECORD_EVENTS.has(type)) refreshSoon("sales", "stock", "alerts", "status");
    if (type === "day_close") refreshSoon("report");
    if (STATUS_EVENTS.has(type)) refreshSoon("status");
    if (type === "oversold") refreshSoon("alerts");
  }

  // One line per event: what a manager needs to recognise it.
  function describe(type, body) {
    switch (type) {
      case "sale":
        return `${body.id} ${money(body.total_cents)}`;
      case "void":
        return `${body.id} voids ${body.sale_id}`;
      case "receipt":
        return `${body.id} +${body.qty} ${body.sku}`;
      case "adjustment":
        return `${body.id} ${body.delta > 0 ? "+" : ""}${body.delta} ${body.sku} (${body.reason})`;
      case "price":
        return `${body.id} ${body.sku} ${money(body.unit_cents)}`;
      case "day_close":
        return `${body.id} closes ${body.day} (net ${money(body.net_cents)})`;
      case "peer_up":
      case "peer_down":
        return String(body.peer);
      case "leader":
        return body.leader ? `${body.leader} (term ${body.term})` : "none elected";
      case "cloud_link":
        return body.up ? "up" : "down";
      case "oversold":
        return (body.skus || []).join(", ") || "none";
      default:
        return typeof body.id === "string" ? body.id : "";
    }
  }

  function logEvent(type, body) {
    const item = document.createElement("li");
    item.dataset.type = type;
    const at = typeof body.at_ms === "number" ? body.at_ms : laneNow();
    item.textContent = `${clock(at)} ${type.replaceAll("_", " ")} ${describe(type, body)}`;
    const list = $("events");
    note("events-note", "");
    list.prepend(item);
    while (list.children.length > EVENTS_SHOWN) list.lastElementChild.remove();
  }

  async function follow(session) {
    let failures = 0;
    while (state.session === session) {
      const controller = new AbortController();
      state.feed = controller;
      let silence = null;
      const watch = () => {
        clearTimeout(silence);
        silence = setTimeout(() => controller.abort(), FEED_SILENCE_MS);
      };
      let wait = FEED_RETRY_MS[Math.min(failures, FEED_RETRY_MS.length - 1)];
      try {
        const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
        if (state.lastEventId !== null) headers["Last-Event-ID"] = state.lastEventId;
        watch();
        const response = await fetch("/v1/events", {
          headers,
          cache: "no-store",
          signal: controller.signal,
        });
        if (response.status === 401) {
          signOut("The lane refused the token (it may have been replaced); sign in again.");
          return;
        }
        if (response.status === 400 && state.lastEventId !== null) {
          // The lane no longer knows that id (its directory was replaced): start afresh; the
          // full refresh on connecting shows what the missed events would have.
          state.lastEventId = null;
          wait = 0;
        } else if (response.status === 404 || response.status === 405) {
          setFeed("polling", `polling every ${TICK_MS / 1000} s (this lane has no change feed)`);
          note("events-note", "This lane has no change feed (GET /v1/events).");
          wait = FEED_ABSENT_RETRY_MS;
        } else if (!response.ok || !response.body) {
          throw new Error(`HTTP ${response.status}`);
        } else {
          setFeed("live", "live");
          failures = 0;
          refreshAll(); // whatever happened while the feed was down (status events are not replayed)
          const parser = new FeedParser(onEvent);
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            watch();
            parser.push(value);
          }
          throw new Error("the lane ended the feed");
        }
      } catch (error) {
        if (state.session !== session) return; // signed out meanwhile
        failures += 1;
        setFeed("reconnecting", `reconnecting to the change feed (${error.message || error.name})`);
      } finally {
        clearTimeout(silence);
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  // -- signing in and out -------------------------------------------------------------------

  function start() {
    state.session += 1;
    $("login-panel").hidden = true;
    $("board").hidden = false;
    $("logout").hidden = false;
    setFeed("connecting", "connecting to the change feed");
    refreshAll();
    state.ticker = setInterval(() => {
      refresh("status");
      const every = state.feedLive ? FULL_REFRESH_LIVE_MS : TICK_MS;
      if (Date.now() - state.lastFullMs >= every) refreshAll();
    }, TICK_MS);
    follow(state.session);
  }

  function signOut(message) {
    state.token = null;
    state.session += 1;
    state.lastEventId = null;
    sessionStorage.removeItem(TOKEN_KEY);
    clearInterval(state.ticker);
    clearTimeout(state.pendingTimer);
    state.pendingTimer = null;
    state.pending.clear();
    if (state.feed) state.feed.abort();
    state.feed = null;
    state.lanes.clear();
    state.cloudIds.clear();
    state.sales.clear();
    $("events").replaceChildren();
    note("events-note", "No event yet.");
    $("board").hidden = true;
    $("logout").hidden = true;
    $("login-panel").hidden = false;
    text("identity", "");
    setFeed("off", "not signed in");
    note("login-error", message);
  }

  async function signIn(token) {
    state.token = token;
    note("login-error", "");
    let answer;
    try {
      // A route that needs the token whatever this lane's version (older ones served their
      // other reads without it).
      answer = await api("/v1/dashboard");
      if (answer.ok) answer = await api("/v1/status");
    } catch (error) {
      state.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      note(
        "login-error",
        error instanceof Unauthorized
          ? "This token was refused (401): copy it again from api.token of this lane."
          : `The lane did not answer (${error.message}).`,
      );
      return;
    }
    if (!answer.ok) {
      state.token = null;
      note("login-error", `The lane answered ${errorText(answer)}.`);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    renderStatus(answer.body);
    start();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("token");
      const token = input.value.trim();
      input.value = "";
      if (token) signIn(token);
    });
    $("logout").addEventListener("click", () => signOut(""));
    $("stock-form").addEventListener("submit", (event) => event.preventDefault());
    $("stock-query").addEventListener("input", renderStock);
    const kept = sessionStorage.getItem(TOKEN_KEY);
    if (kept) signIn(kept);
  });
})();
