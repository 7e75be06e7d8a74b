// kgmm page: upload an image, ask, draw the answer's evidence graph, click through entities.
// No framework, no network access beyond this service (the page's CSP enforces 'self').
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = { answer: null, entity: null, busy: false };
  let cy = null;

  const STYLE = [
    { selector: "node", style: {
      "label": "data(label)", "font-size": 11, "text-valign": "bottom", "text-margin-y": 4,
      "text-wrap": "ellipsis", "text-max-width": 120, "color": "#1d2433",
      "background-color": "#9aa5b8", "width": 22, "height": 22,
      "border-width": 1, "border-color": "#ffffff" } },
    { selector: "node[kind = 'question']", style: {
      "shape": "round-rectangle", "background-color": "#3a86ff", "width": 34, "height": 24,
      "text-max-width": 200 } },
    { selector: "node[kind = 'image']", style: {
      "shape": "round-rectangle", "background-color": "#8e5bd6", "width": 34, "height": 24 } },
    { selector: "node[kind = 'object']", style: {
      "background-color": "#c3a6ee", "width": 16, "height": 16 } },
    { selector: "node.linked", style: { "background-color": "#2a9d8f" } },
    { selector: "node.alternative", style: { "background-color": "#e76f51" } },
    { selector: "node.answer", style: {
      "background-color": "#f2b705", "width": 40, "height": 40, "border-width": 3,
      "border-color": "#8a6a00", "font-weight": "bold", "font-size": 13 } },
    { selector: "node.explored", style: { "background-color": "#b8c2d3" } },
    { selector: "node:selected", style: { "border-width": 4, "border-color": "#2f6fde" } },
    { selector: "edge", style: {
      "width": 1.5, "line-color": "#b4bccb", "target-arrow-color": "#b4bccb",
      "target-arrow-shape": "triangle", "curve-style": "bezier", "label": "data(label)",
      "font-size": 8, "color": "#5b6475", "text-rotation": "autorotate",
      "text-background-color": "#ffffff", "text-background-opacity": 0.8,
      "text-background-padding": 1 } },
    { selector: "node[kind = 'answer']", style: { "shape": "star" } },
    { selector: "edge[kind = 'relation']", style: {
      "line-color": "#7d8aa3", "target-arrow-color": "#7d8aa3", "width": 2.5 } },
    { selector: "edge[kind = 'answer']", style: {
      "line-style": "dashed", "line-color": "#d4a106", "target-arrow-color": "#d4a106" } },
    { selector: "edge[kind = 'kg']", style: { "line-style": "dotted" } },
  ];

  function graph() {
    if (!cy) {
      cy = cytoscape({ container: $("graph"), style: STYLE, elements: [],
                       wheelSensitivity: 0.3, minZoom: 0.2, maxZoom: 3 });
      cy.on("tap", "node", (event) => selectNode(event.target));
    }
    return cy;
  }

  function nodeElement(node) {
    return { group: "nodes", data: { id: node.id, label: node.label, kind: node.kind,
                                     roles: node.roles || [] },
             classes: (node.roles || []).join(" ") };
  }

  function drawAnswer(answer) {
    const g = graph();
    g.elements().remove();
    g.add(answer.graph.nodes.map(nodeElement));
    g.add(answer.graph.edges.map((e) => ({ group: "edges", data: e })));
    const roots = g.nodes("[kind = 'question'], [kind = 'image']");
    g.layout({ name: "breadthfirst", directed: true, roots: roots, spacingFactor: 1.1,
               padding: 24, animate: false }).run();
    g.fit(undefined, 24);
  }

  function selectNode(node) {
    graph().nodes().unselect();
    node.select();
    const kind = node.data("kind");
    if (kind === "entity") {
      showEntity(node.id());
    } else {
      showPlain(node.data("label"), kind === "question" ? "the question" :
        kind === "image" ? "the uploaded image" : kind === "answer" ?
        "the answer (not an entity of the graph)" : "an object the scene parser found");
    }
  }

  function showPlain(label, what) {
    $("entity").hidden = false;
    $("entity-label").textContent = label;
    $("entity-id").textContent = what;
    for (const id of ["entity-types", "entity-description", "entity-aliases"]) {
      $(id).textContent = "";
    }
    $("neighbours").replaceChildren();
    $("expand-button").hidden = true;
  }

  async function showEntity(id) {
    const response = await fetch("/entities/" + encodeURIComponent(id) + "?limit=60");
    const body = await response.json();
    if (!response.ok) { showError(body); return; }
    state.entity = body;
    $("entity").hidden = false;
    $("expand-button").hidden = false;
    $("entity-label").textContent = body.label;
    $("entity-id").textContent = body.id;
    $("entity-types").textContent = body.types.length ? "· " + body.types.join(", ") : "";
    $("entity-description").textContent = body.description;
    $("entity-aliases").textContent = body.aliases.length ? "also: " + body.aliases.join(", ") : "";
    const items = body.neighbours.map((n) => {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.textContent = n.label;
      link.dataset.id = n.id;
      link.title = n.id;
      link.addEventListener("click", (event) => { event.preventDefault(); walkTo(body.id, n); });
      const note = document.createElement("span");
      note.className = "muted";
      if (n.direction === "out") {
        note.textContent = n.relation_label + " ";
        li.append(note, link);
      } else {
        note.textContent = " " + n.relation_label + " this";
        li.append(link, note);
      }
      return li;
    });
    if (body.truncated) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = `… ${body.out_degree + body.in_degree - body.neighbours.length} more`;
      items.push(li);
    }
    $("neighbours").replaceChildren(...items);
  }

  function addNeighbour(fromId, n, index, count) {
    const g = graph();
    if (g.getElementById(n.id).empty()) {
      const from = g.getElementById(fromId);
      const centre = from.nonempty() ? from.position() : { x: 0, y: 0 };
      const angle = (2 * Math.PI * index) / Math.max(count, 1);
      const radius = 90 + 6 * Math.min(count, 20);
      g.add({ group: "nodes", data: { id: n.id, label: n.label, kind: "entity", roles: [] },
              classes: "explored",
              position: { x: centre.x + radius * Math.cos(angle),
                          y: centre.y + radius * Math.sin(angle) } });
    }
    const [source, target] = n.direction === "out" ? [fromId, n.id] : [n.id, fromId];
    const edgeId = `${source}|${n.relation}|${target}`;
    if (g.getElementById(edgeId).empty() && g.getElementById(fromId).nonempty()) {
      g.add({ group: "edges", data: { id: edgeId, source: source, target: target,
                                      label: n.relation, kind: "relation" } });
    }
    return g.getElementById(n.id);
  }

  function walkTo(fromId, n) {
    const node = addNeighbour(fromId, n, graph().nodes().length, 12);
    graph().animate({ center: { eles: node } }, { duration: 200 });
    selectNode(node);
  }

  function expand() {
    const entity = state.entity;
    if (!entity) return;
    entity.neighbours.forEach((n, i) => addNeighbour(entity.id, n, i, entity.neighbours.length));
    graph().fit(undefined, 24);
  }

  function showError(problem) {
    const box = $("error");
    box.hidden = false;
    box.textContent = (problem.title || "Error") + ": " + (problem.detail || "") +
      (problem.field ? ` (field: ${problem.field})` : "");
  }

  function renderAnswer(answer) {
    state.answer = answer;
    $("result").hidden = false;
    $("answer-text").textContent = answer.text || "(no answer)";
    const link = $("answer-entity");
    link.hidden = !answer.entity_id;
    link.textContent = answer.entity_id || "";
    link.onclick = (event) => {
      event.preventDefault();
      const node = graph().getElementById(answer.entity_id);
      if (node.nonempty()) selectNode(node); else showEntity(answer.entity_id);
    };
    const pct = Math.round(answer.score * 1000) / 10;
    $("answer-bar").style.width = Math.max(0, Math.min(100, pct)) + "%";
    $("answer-score").textContent = `score ${pct}% · ${answer.elapsed_ms.toFixed(0)} ms`;
    $("alternatives").replaceChildren(...answer.alternatives.map((a) => {
      const li = document.createElement("li");
      li.textContent = `${a.text} — ${(a.score * 100).toFixed(1)}%`;
      return li;
    }));
    const linked = answer.evidence ? answer.evidence.linked_entities : [];
    $("linked").replaceChildren(...linked.map((e) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.textContent = e.label;
      a.title = e.entity_id;
      a.addEventListener("click", (event) => {
        event.preventDefault();
        const node = graph().getElementById(e.entity_id);
        if (node.nonempty()) selectNode(node); else showEntity(e.entity_id);
      });
      const note = document.createElement("span");
      note.className = "muted";
      note.textContent = ` from the ${e.source}${e.span ? " (" + e.span + ")" : ""}`;
      li.append(a, note);
      return li;
    }));
    const ev = answer.evidence;
    const terms = ev && ev.score_terms && ev.score_terms.length ?
      "; answer logit = " + ev.score_terms.map((t, i) =>
        (t.value < 0 ? (i ? "− " : "−") : (i ? "+ " : "")) +
        `${Math.abs(t.value).toFixed(2)} (${t.name})`).join(" ")
      : "";
    $("evidence-summary").textContent = ev ? `reasoned over ${ev.subgraph_nodes} nodes and ` +
      `${ev.subgraph_edges} edges; ${ev.paths.length} evidence paths drawn${terms}` : "";
    drawAnswer(answer);
  }

  async function ask(event) {
    event.preventDefault();
    if (state.busy) return;
    const form = $("ask-form");
    $("error").hidden = true;
    $("status").textContent = "Thinking…";
    $("ask-button").disabled = true;
    state.busy = true;
    document.body.dataset.state = "asking";
    try {
      const response = await fetch("/answer", { method: "POST", body: new FormData(form) });
      const body = await response.json();
      if (!response.ok) {
        showError(body);
        $("status").textContent = "";
        document.body.dataset.state = "error";
        return;
      }
      $("status").textContent = "";
      renderAnswer(body);
      document.body.dataset.state = "answered";
    } catch (err) {
      showError({ title: "Network error", detail: String(err) });
      $("status").textContent = "";
      document.body.dataset.state = "error";
    } finally {
      state.busy = false;
      $("ask-button").disabled = false;
    }
  }

  function preview() {
    const file = $("image-input").files[0];
    const img = $("preview");
    if (!file) { img.hidden = true; return; }
    img.src = URL.createObjectURL(file);
    img.hidden = false;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("ask-form").addEventListener("submit", ask);
    $("image-input").addEventListener("change", preview);
    $("expand-button").addEventListener("click", expand);
    document.body.dataset.state = "ready";
  });

  window.kgmm = { graph: graph, state: state, showEntity: showEntity };
})();
