// Sessions: create a coordination session (topology, debate format, decision mode, agents), run
// turns and rounds streamed over SSE (turn_start, token, turn_complete, round_complete, error),
// a timeline of messages seen as everyone or as one agent (whispers only where that agent may see
// them), whispers, votes (cast here or asked of the agents) and the decision, and "what this agent
// sees next" (the prompt endpoint).

import {api, sse} from './api.js';
import {h, fill, field, select, fmtInt, errorBox} from './dom.js';

const TOPOLOGIES = ['turn_by_turn', 'round_robin', 'broadcast', 'whisper', 'interrupt'];
const FORMATS = ['free_form', 'structured', 'socratic', 'devils_advocate', 'parliamentary'];
const DECISIONS = ['none', 'majority_vote', 'ranked_choice', 'coordinator_decides', 'consensus'];
const DEFAULT_AGENTS = [
  ['Ada', 'You are Ada, a careful planner. Answer in two sentences.'],
  ['Ben', 'You are Ben, a sceptic. Answer in two sentences.'],
  ['Cy', 'You are Cy, the moderator. Keep it short.'],
];
const base = (id) => `/v1/coordination/sessions/${encodeURIComponent(id)}`;

export function mount(root) {
  let session = null;
  const status = h('div', {class: 'status-line', role: 'status'});
  const chooser = h('select');
  chooser.id = 'session-pick';
  const summary = h('div', {class: 'card session-summary'});
  const timeline = h('ol', {class: 'timeline', 'aria-live': 'polite', 'aria-label': 'Session timeline'});
  const viewer = h('select');
  const sees = h('div', {class: 'card'});
  const decision = h('div', {class: 'card'});
  const controls = h('div', {class: 'toolbar'});
  const whisper = h('form', {class: 'toolbar', 'aria-label': 'Whisper'});
  const vote = h('form', {class: 'toolbar', 'aria-label': 'Vote'});

  const create = createForm(async (body) => {
    try {
      const s = await api('/v1/coordination/sessions', {body});
      create.querySelector('details').open = false;
      status.replaceChildren(h('span', {class: 'ok'}, `Created ${s.session_id}`));
      await list(s.session_id);
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
  });
  root.append(create, status,
  h('div', {class: 'toolbar'}, h('div', {class: 'field'}, h('label', {for: chooser.id}, 'Session'), chooser),
    h('button', {type: 'button', onclick: () => list(chooser.value)}, 'Reload')),
  summary, controls, whisper,
  h('div', {class: 'split'},
    h('section', {'aria-label': 'Timeline'}, h('h2', {}, 'Timeline'), field('Seen by', viewer)[0], timeline),
    h('section', {'aria-label': 'Next prompt and decision'}, h('h2', {}, 'What an agent sees next'), sees, h('h2', {}, 'Votes and decision'), vote, decision)));

  chooser.addEventListener('change', () => open(chooser.value));
  viewer.addEventListener('change', () => messages());

  async function list(select) {
    try {
      const all = (await api('/v1/coordination/sessions')).sessions || [];
      fill(chooser, ...(all.length ? [] : [h('option', {value: ''}, 'none yet')]),
        ...all.map((s) => h('option', {value: s.session_id, selected: s.session_id === select}, `${s.session_id} · ${s.topology} · ${s.status}`)));
      const pick = select || all.at(-1)?.session_id;
      if (pick) {
        chooser.value = pick;
        await open(pick);
      }
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
  }

  async function open(id) {
    if (!id) return;
    try {
      session = await api(base(id));
      const keep = viewer.value;
      fill(viewer, h('option', {value: ''}, 'everyone (public)'), ...session.agents.map((a) => h('option', {value: a.agent_id}, a.display_name)));
      viewer.value = session.agents.some((a) => a.agent_id === keep) ? keep : '';
      renderSummary();
      renderControls();
      await Promise.all([messages(), decisionView()]);
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
  }

  function renderSummary() {
    const s = session;
    fill(summary, h('dl', {class: 'facts'},
      ...[['status', s.status], ['topology', s.topology], ['format', s.debate_format], ['decision', s.decision_mode],
        ['turns', `${s.current_turn}${s.max_turns ? ` of ${s.max_turns}` : ''}`], ['next speaker', s.next_speaker || '–'],
        ['prompt tokens', `${fmtInt(s.usage.prompt_tokens)} (${fmtInt(s.usage.cached_tokens)} from memory, ${fmtInt(s.usage.prefilled_tokens)} computed)`],
      ].flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))])),
    h('p', {class: 'small'}, 'Agents: ', ...s.agents.map((a) => h('span', {class: 'chip', title: `memory ${a.memory_id}, ${a.lifecycle}`}, `${a.display_name} (${a.agent_id}, ${a.turns} turns)`))));
  }

  function renderControls() {
    const s = session;
    const active = s.status === 'active';
    const who = select(s.agents.map((a) => [a.agent_id, a.display_name]), s.next_speaker);
    const btn = (label, f, enabled = active) => h('button', {type: 'button', disabled: !enabled, onclick: f}, label);
    fill(controls,
      btn('Next turn', () => stream('turn/stream', s.topology === 'interrupt' ? {agent_id: who.value} : {})),
      s.topology === 'interrupt' ? field('Speaker', who)[0] : null,
      btn('Run a round', () => stream('round/stream', {})),
      btn('Ask agents to decide', decide, s.decision_mode !== 'none' || (s.options || []).length >= 2),
      btn('Delete session', remove, true));
    const from = select(s.agents.map((a) => [a.agent_id, a.display_name]));
    const to = select(s.agents.map((a) => [a.agent_id, a.display_name]), s.agents[1]?.agent_id);
    const content = h('input', {placeholder: 'a private note'});
    fill(whisper, field('Whisper from', from)[0], field('to', to)[0], h('div', {class: 'field grow'}, h('label', {for: (content.id = 'whisper-text')}, 'Whisper'), content),
      h('button', {type: 'submit', disabled: !active}, 'Whisper'));
    const voter = select(s.agents.map((a) => [a.agent_id, a.display_name]));
    const choice = h('input', {placeholder: (s.options || []).join(' / ') || 'a choice'});
    choice.id = 'vote-choice';
    fill(vote, field('Vote as', voter)[0], h('div', {class: 'field grow'}, h('label', {for: choice.id}, 'Choice'), choice),
      h('button', {type: 'submit'}, 'Cast vote'));
    vote.onsubmit = async (e) => {
      e.preventDefault();
      try {
        await api(`${base(s.session_id)}/vote`, {body: {agent_id: voter.value, choice: choice.value.trim()}});
        choice.value = '';
        await decisionView();
      } catch (err) {
        status.replaceChildren(errorBox(err));
      }
    };
    whisper.onsubmit = async (e) => {
      e.preventDefault();
      try {
        await api(`${base(s.session_id)}/whisper`, {body: {from_agent_id: from.value, to_agent_id: to.value, content: content.value}});
        content.value = '';
        await messages();
      } catch (err) {
        status.replaceChildren(errorBox(err));
      }
    };
  }

  async function stream(path, body) {
    const live = new Map();
    for (const b of controls.querySelectorAll('button')) b.disabled = true;
    status.replaceChildren(h('span', {class: 'muted'}, 'Running…'));
    try {
      await sse(`${base(session.session_id)}/${path}`, {body}, (name, data) => {
        if (name === 'turn_start') {
          const text = h('div', {class: 'content'});
          const item = h('li', {class: 'msg turn live', 'aria-busy': 'true'}, h('div', {class: 'who'}, `${data.agent_name} · turn ${data.turn}`), text);
          timeline.append(item);
          live.set(data.turn, {item, text});
        } else if (name === 'token') {
          const t = live.get(data.turn);
          if (t) t.text.textContent += data.text;
        } else if (name === 'turn_complete') {
          const t = live.get(data.turn);
          if (t) {
            t.text.textContent = data.content;
            t.item.setAttribute('aria-busy', 'false');
            t.item.append(usageLine(data.usage));
          }
        } else if (name === 'error') {
          throw new Error(data.error?.message || 'the turn failed');
        }
      });
      status.replaceChildren(h('span', {class: 'ok'}, 'Done.'));
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
    await open(session.session_id);
  }

  async function messages() {
    if (!session) return;
    const q = viewer.value ? `?agent_id=${encodeURIComponent(viewer.value)}` : '';
    try {
      const m = await api(`${base(session.session_id)}/messages${q}`);
      fill(timeline, ...m.messages.map(message));
      if (!m.messages.length) timeline.append(h('li', {class: 'muted'}, 'No messages yet: run a turn.'));
      const agent = viewer.value || session.next_speaker || session.agents[0].agent_id;
      const p = await api(`${base(session.session_id)}/prompt/${encodeURIComponent(agent)}`);
      fill(sees, h('p', {class: 'small muted'}, `${agent}’s next prompt (memory ${p.memory_id}); choose “Seen by” to pick another agent.`),
        h('ol', {class: 'prompt'}, ...p.messages.map((x) => h('li', {}, h('strong', {}, x.role), h('pre', {}, x.content)))));
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
  }

  async function decisionView() {
    try {
      const d = await api(`${base(session.session_id)}/decision`);
      const r = d.decision || {};
      fill(decision,
        h('p', {}, h('strong', {}, r.status || '–'), r.outcome ? ` · ${r.outcome}` : '', r.explanation ? ` — ${r.explanation}` : ''),
        d.votes?.length ? h('ul', {}, ...d.votes.map((v) => h('li', {}, `${v.agent_id}: ${v.choice || (v.ranking || []).join(' > ')} (${v.source})`))) : h('p', {class: 'muted small'}, 'No votes yet.'));
    } catch (e) {
      fill(decision, errorBox(e));
    }
  }

  async function decide() {
    try {
      const options = session.options?.length ? undefined : prompt('Options, comma separated', 'yes, no')?.split(',').map((x) => x.trim()).filter(Boolean);
      status.replaceChildren(h('span', {class: 'muted'}, 'Asking every voting agent…'));
      await api(`${base(session.session_id)}/decide`, {body: options ? {options} : {}});
      status.replaceChildren(h('span', {class: 'ok'}, 'Decided.'));
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
    await open(session.session_id);
  }

  async function remove() {
    if (!confirm(`Delete ${session.session_id}? Ephemeral agents’ memory goes with it.`)) return;
    try {
      await api(base(session.session_id), {method: 'DELETE'});
      session = null;
      fill(summary);
      fill(controls);
      fill(whisper);
      fill(vote);
      fill(timeline);
      fill(sees);
      fill(decision);
      await list();
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
  }

  return {show: () => list(chooser.value)};
}

function message(m) {
  const whisper = m.kind === 'whisper';
  const to = whisper && m.visible_to ? ` → ${m.visible_to.slice(1).join(', ')}` : '';
  return h('li', {class: `msg ${m.kind}${whisper ? ' whisper' : ''}`},
    h('div', {class: 'who'}, `${m.sender_name}${to}`, whisper ? h('span', {class: 'chip'}, 'whisper') : null,
      m.turn ? h('span', {class: 'muted small'}, ` turn ${m.turn}`) : null),
    h('div', {class: 'content'}, m.content),
    m.visible_to ? h('div', {class: 'muted small'}, `visible to ${m.visible_to.join(', ')}`) : null);
}

function usageLine(u) {
  const cached = u?.prompt_tokens_details?.cached_tokens || 0;
  return h('div', {class: 'muted small'}, `${fmtInt(cached)} of ${fmtInt(u?.prompt_tokens)} prompt tokens from memory · ${fmtInt(u?.completion_tokens)} generated`);
}

function createForm(onCreate) {
  const topology = select(TOPOLOGIES, 'round_robin');
  const format = select(FORMATS, 'free_form');
  const mode = select(DECISIONS, 'none');
  const prompt = h('textarea', {rows: 2, value: 'Should the team adopt a four-day week? Give your view.'});
  const options = h('input', {value: '', placeholder: 'yes, no'});
  const maxTurns = h('input', {type: 'number', min: 0, max: 1000, value: '0'});
  const maxTokens = h('input', {type: 'number', min: 1, max: 2048, value: '60'});
  const agents = h('div', {class: 'agent-rows'});
  const addAgent = (name = '', sys = '') => {
    const n = agents.children.length + 1;
    const display = h('input', {value: name, required: true});
    const role = select(['participant', 'moderator', 'observer'], name === 'Cy' ? 'moderator' : 'participant');
    const system = h('input', {value: sys});
    const lifecycle = select(['ephemeral', 'permanent'], 'ephemeral');
    const row = h('fieldset', {class: 'agent-row'}, h('legend', {}, `Agent ${n}`),
      field('Name', display)[0], field('Role', role)[0], h('div', {class: 'field grow'}, h('label', {for: (system.id = `sess-sys-${n}-${Date.now()}`)}, 'System prompt'), system),
      field('Memory', lifecycle)[0],
      h('button', {type: 'button', class: 'link', 'aria-label': `Remove agent ${n}`, onclick: () => row.remove()}, 'Remove'));
    row.read = () => ({display_name: display.value.trim(), role: role.value, system_prompt: system.value, lifecycle: lifecycle.value});
    agents.append(row);
  };
  for (const [n, s] of DEFAULT_AGENTS) addAgent(n, s);
  const form = h('form', {class: 'card create'},
    h('details', {open: true}, h('summary', {}, 'New session'),
      h('div', {class: 'row'}, field('Topology', topology)[0], field('Debate format', format)[0], field('Decision mode', mode)[0],
        field('Options', options, 'comma separated')[0], field('Max turns', maxTurns, '0 = no limit')[0], field('Max tokens per turn', maxTokens)[0]),
      h('div', {class: 'field'}, h('label', {for: (prompt.id = 'sess-prompt')}, 'Opening message'), prompt),
      agents,
      h('div', {class: 'toolbar'}, h('button', {type: 'button', onclick: () => addAgent()}, 'Add agent'),
        h('button', {type: 'submit', class: 'primary'}, 'Create session'))));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const opts = options.value.split(',').map((x) => x.trim()).filter(Boolean);
    onCreate({
      topology: topology.value, debate_format: format.value, decision_mode: mode.value,
      initial_prompt: prompt.value, max_turns: Number(maxTurns.value), max_tokens: Number(maxTokens.value),
      options: opts.length ? opts : undefined,
      agents: [...agents.children].map((r) => r.read()),
    });
  });
  return form;
}
