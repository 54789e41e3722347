// stylelens explorer: reads the controls into one state (stylelens/serve/state.py), asks the server for the image,
// the mixing grid and the activation view, and shows the newest answer. The server renders latest-wins; this page
// also drops any answer older than one it has already shown.
'use strict';

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get('token');
let info = null;          // the open network's /api/info
const lanes = {};         // per lane: sent/shown sequence numbers and the key of the last state sent

async function call(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, token ? { 'x-stylelens-token': token } : {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body.superseded ? null : body;                         // null: a newer request replaced this one
}

function post(path, state) {
  return call(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(state) });
}

function showError(message) {
  $('error').hidden = !message;
  $('error').textContent = message || '';
}

function numberOrNull(text) {
  return text.trim() === '' ? null : Number(text);
}

function baseSpec() {
  if ($('base-kind').value === 'w' && $('wfile').value) return `w:${$('wfile').value}@${$('wrow').value || 0}`;
  return String(Math.max(0, Math.floor(Number($('seed').value) || 0)));
}

function mixLayers() {
  return [...document.querySelectorAll('#mix-layers input:checked')].map((box) => box.value).join(',');
}

function directionSpec() {
  const kind = $('dir-kind').value;
  return kind ? `${kind}:${$('dir-index').value || 0}` : null;
}

// The page's state, field for field the server's ViewState.
function state() {
  const layers = mixLayers();
  return {
    network: $('network').value,
    base: baseSpec(),
    truncation_psi: Number($('psi').value),
    truncation_cutoff: numberOrNull($('cutoff').value),
    class_idx: info && info.c_dim ? $('class').value : null,
    noise_mode: $('noise').value,
    mix_source: $('mix-on').checked && layers ? $('mix-source').value.trim() || null : null,
    mix_layers: layers || 'coarse',
    grid_rows: $('grid-rows').value.trim(),
    grid_cols: $('grid-cols').value.trim(),
    direction: directionSpec(),
    direction_value: Number($('dir-value').value),
    direction_layers: $('dir-layers').value.trim() || null,
    translate_x: Number($('tx').value),
    translate_y: Number($('ty').value),
    rotate: Number($('rot').value),
    hook: $('hook').value || null,
    channel: Number($('channel').value),
    norm: $('norm').value,
    view: $('view').value,
  };
}

const GRID_FIELDS = ['network', 'base', 'truncation_psi', 'truncation_cutoff', 'class_idx', 'noise_mode', 'mix_source',
  'mix_layers', 'grid_rows', 'grid_cols'];

function pick(object, fields) {
  return Object.fromEntries(fields.map((name) => [name, object[name]]));
}

// Send a request for a lane unless its state did not change; show its answer unless a newer one was shown.
async function request(lane, path, current, key, show) {
  const entry = lanes[lane] || (lanes[lane] = { sent: 0, shown: 0, done: 0, key: null });
  if (entry.key === key) return;
  entry.key = key;
  const seq = ++entry.sent;
  $('status').textContent = 'rendering…';
  try {
    const answer = await post(path, current);
    if (answer && seq > entry.shown) {
      entry.shown = seq;
      show(answer);
      showError('');
    }
  } catch (err) {
    if (seq === entry.sent) showError(err.message);
  } finally {
    entry.done += 1;
    if (settled()) $('status').textContent = '';
  }
}

function update() {
  if (!info) return;
  const current = state();
  const renderKey = JSON.stringify(Object.assign({}, current, { grid_rows: '', grid_cols: '' }));
  request('render', '/api/render', current, renderKey, showRender);
  $('grid-fig').hidden = !current.mix_source;
  if (current.mix_source) request('grid', '/api/grid', current, JSON.stringify(pick(current, GRID_FIELDS)), showGrid);
}

function showRender(answer) {
  $('live').src = answer.image;
  $('live-caption').textContent = `${info.resolution}×${info.resolution} · rendered in ${(answer.seconds * 1000).toFixed(0)} ms`;
  const act = answer.activation;
  $('act-fig').hidden = !act;
  if (act) {
    $('act').src = act.image;
    $('channel').max = String(act.channels - 1);
    const note = act.note ? ` · ${act.note}` : '';
    $('act-caption').textContent = `${$('hook').value} [${act.shape.join('×')}] · min ${act.min.toPrecision(3)} · `
      + `max ${act.max.toPrecision(3)} · mean ${act.mean.toPrecision(3)} · std ${act.std.toPrecision(3)}${note}`;
  }
}

function showGrid(answer) {
  $('grid').src = answer.image;
}

// True when every request sent has been answered and the newest state has been sent: what tests wait for.
function settled() {
  return Object.values(lanes).every((entry) => entry.done === entry.sent);
}
window.explorer = { settled, state };

function options(select, values, labels) {
  select.replaceChildren(...values.map((value, i) => new Option(labels ? labels[i] : value, value)));
}

function buildLayerBoxes() {
  const byBlock = $('mix-by').value === 'block';
  const names = byBlock ? Object.keys(info.blocks) : [...Array(info.num_ws).keys()].map(String);
  const checked = new Set(info.presets.coarse.flatMap((block) => (byBlock ? [block] : info.blocks[block].map(String))));
  $('mix-layers').replaceChildren(...names.map((name) => {
    const label = document.createElement('label');
    const box = Object.assign(document.createElement('input'), { type: 'checkbox', value: name, checked: checked.has(name) });
    label.append(box, ` ${name.split('_')[0]}`);
    return label;
  }));
}

function buildPresets() {
  $('presets').replaceChildren(...Object.entries(info.presets).map(([name, blocks]) => {
    const button = Object.assign(document.createElement('button'), { type: 'button', textContent: name, disabled: !blocks.length });
    button.addEventListener('click', () => {
      const byBlock = $('mix-by').value === 'block';
      const chosen = new Set(blocks.flatMap((block) => (byBlock ? [block] : info.blocks[block].map(String))));
      document.querySelectorAll('#mix-layers input').forEach((box) => { box.checked = chosen.has(box.value); });
      update();
    });
    return button;
  }));
}

function fillWFiles(selected) {
  const usable = info.w_files.filter((file) => !file.error);
  options($('wfile'), usable.map((file) => file.name));
  if (selected) $('wfile').value = selected;
  const file = usable.find((f) => f.name === $('wfile').value);
  $('wrow').max = file ? String(file.rows - 1) : '0';
}

async function openNetwork(name) {
  showError('');
  $('status').textContent = `opening ${name}…`;
  info = await call(`/api/info?network=${encodeURIComponent(name)}`);
  if (!info) return;
  Object.keys(lanes).forEach((lane) => { lanes[lane].key = null; });
  $('netinfo').textContent = `${info.resolution}² · ${info.num_ws} ws · w ${info.w_dim}`
    + (info.c_dim ? ` · ${info.c_dim} classes` : '') + (info.alias_free ? ' · StyleGAN3' : '');
  $('class-row').hidden = !info.c_dim;
  options($('class'), info.classes.map((_, i) => String(i)), info.classes.map((c, i) => `${i}: ${c}`));
  $('transform').hidden = !info.alias_free;
  options($('hook'), ['', ...info.hooks], ['none', ...info.hooks]);
  const kinds = ['', 'pca', 'sefa', ...info.direction_files];
  options($('dir-kind'), kinds, ['none', 'PCA', 'SeFa', ...info.direction_files]);
  $('cutoff').max = String(info.num_ws);
  $('live').classList.toggle('pixelated', info.resolution < 256);
  $('grid').classList.toggle('pixelated', info.resolution < 256);
  $('act').classList.add('pixelated');
  fillWFiles();
  buildLayerBoxes();
  buildPresets();
  $('status').textContent = '';
  update();
}

async function upload(file) {
  const query = `network=${encodeURIComponent($('network').value)}&name=${encodeURIComponent(file.name)}`;
  try {
    const answer = await call(`/api/wfiles?${query}`, { method: 'POST', body: file });
    info.w_files = info.w_files.filter((f) => f.name !== answer.name).concat([answer]);
    fillWFiles(answer.name);
    $('base-kind').value = 'w';
    syncBaseKind();
    update();
  } catch (err) {
    showError(err.message);
  }
}

async function snapshot() {
  $('status').textContent = 'writing snapshot…';
  try {
    const answer = await post('/api/snapshot', state());
    $('snapshot-out').hidden = false;
    $('snapshot-out').textContent = `wrote ${answer.folder}/ (${answer.files.join(', ')}, manifest.json)\n`
      + answer.commands.map((c) => `# ${c.reproduces}${c.exact ? '' : ' (not pixel-exact)'}\n${c.command}`).join('\n');
  } catch (err) {
    showError(err.message);
  }
  $('status').textContent = '';
}

function syncBaseKind() {
  $('seed-row').hidden = $('base-kind').value !== 'seed';
  $('w-row').hidden = $('base-kind').value !== 'w';
}

function wire() {
  const outputs = { psi: 'psi-out', 'dir-value': 'dir-value-out', tx: 'tx-out', ty: 'ty-out', rot: 'rot-out' };
  Object.entries(outputs).forEach(([input, output]) => {
    $(input).addEventListener('input', () => { $(output).textContent = $(input).value; });
  });
  $('channel').addEventListener('input', () => {
    $('channel-out').textContent = $('channel').value === '-1' ? 'mean |x|' : $('channel').value;
  });
  $('seed').addEventListener('input', () => { $('seed-slider').value = $('seed').value; });
  $('seed-slider').addEventListener('input', () => { $('seed').value = $('seed-slider').value; });
  $('base-kind').addEventListener('change', syncBaseKind);
  $('wfile').addEventListener('change', () => fillWFiles($('wfile').value));
  $('mix-by').addEventListener('change', buildLayerBoxes);
  $('hook').addEventListener('change', () => { $('channel').value = '-1'; $('channel-out').textContent = 'mean |x|'; });
  $('controls').addEventListener('input', update);
  $('controls').addEventListener('change', update);
  $('wupload').addEventListener('change', () => { if ($('wupload').files[0]) upload($('wupload').files[0]); });
  $('network').addEventListener('change', () => openNetwork($('network').value).catch((err) => showError(err.message)));
  $('snapshot').addEventListener('click', snapshot);
}

async function start() {
  wire();
  const { networks, default: first } = await call('/api/networks');
  options($('network'), networks);
  $('network').value = first;
  await openNetwork(first);
}

start().catch((err) => showError(err.message));
