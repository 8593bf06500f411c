"""Where the time of one PPO update goes, from XLA's profiler.

The trainer labels its ops with named scopes (``rollout``, ``advantages``, ``learn``,
``optimizer``, ``shuffle`` for the phases; ``env``, ``actor``, ``critic``, ``distribution``,
``normalize`` for what an op belongs to). ``op_times`` runs a compiled function once under
``jax.profiler.trace`` and adds up the time of every executed XLA op (control-flow ops, whose
time is their body's, are left out); ``stage_of`` maps an op's scope path to a stage, with the
gradient's ops (``transpose(jvp(...))``) apart from the loss's forward ops. Ops run on two
threads at once here, so the shares are of the summed op time, not of the wall time.
"""

from __future__ import annotations

import collections
import glob
import re
import tempfile
from collections.abc import Callable
from typing import Any

import jax
from jax.profiler import ProfileData

CONTROL_FLOW = ("while", "conditional", "call")
PARTS = ("env", "distribution", "actor", "critic", "normalize")
# stages in report order; "learn" splits into forward, backward, optimizer and shuffle
STAGES = (
    *(f"rollout: {p}" for p in PARTS),
    "rollout: other (keys, reward scaling, stacking)",
    "advantages (GAE / V-trace)",
    "learn: shuffle",
    *(f"learn: forward {p}" for p in ("actor", "distribution", "critic")),
    "learn: forward loss terms",
    *(f"learn: backward {p}" for p in ("actor", "distribution", "critic")),
    "learn: backward loss terms",
    "learn: optimizer (clip, Adam, apply)",
    "other (metrics, bookkeeping)",
)
_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*? ([a-z][\w\-]*)\(")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_OPERAND = re.compile(r"%([\w.\-]+)")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")


def _part(path: str, parts: tuple[str, ...]) -> str | None:
    """The innermost of ``parts`` named in the scope path (None if none is); a scope may be
    wrapped by a transformation, as in ``vmap(rollout)`` or ``transpose(jvp(actor))``."""
    found = [(m.start(), p) for p in parts for m in re.finditer(rf"(?:^|[/(]){p}(?:[/)]|$)", path)]
    return max(found)[1] if found else None


def stage_of(op_name: str) -> str:
    """The stage (one of ``STAGES``) of an op from its scope path."""
    if _part(op_name, ("rollout",)):
        part = _part(op_name, PARTS)
        return f"rollout: {part}" if part else STAGES[len(PARTS)]
    if _part(op_name, ("advantages",)):
        return "advantages (GAE / V-trace)"
    if _part(op_name, ("learn",)):
        if _part(op_name, ("optimizer",)):
            return "learn: optimizer (clip, Adam, apply)"
        if _part(op_name, ("shuffle",)):
            return "learn: shuffle"
        direction = "backward" if "transpose(" in op_name else "forward"
        part = _part(op_name, ("actor", "distribution", "critic"))
        return f"learn: {direction} {part or 'loss terms'}"
    return "other (metrics, bookkeeping)"


def instructions(hlo_text: str) -> dict[str, tuple[str, str]]:
    """``{instruction name: (opcode, op_name)}`` of a compiled module's HLO text.

    XLA drops the op_name of some fusions (the dots it hands to its matmul library): such an
    instruction takes that of the computation it calls (its root's, or else the first one named
    inside), or else that of its operands, preferring a gradient's (``transpose(...)``)."""
    out, calls, operands, comp_name = {}, {}, {}, {}
    current = None
    for line in hlo_text.splitlines():
        head = _COMPUTATION.match(line)
        if head:
            current = head.group(1)
            continue
        m = _INSTR.match(line)
        if not m:
            continue
        instr = m.group(1)
        name = _OP_NAME.search(line)
        op_name = name.group(1) if name else ""
        out[instr] = (m.group(2), op_name)
        called = _CALLS.search(line)
        if called:
            calls[instr] = called.group(1)
        args = line[m.end() :].split(")", 1)[0]
        operands[instr] = _OPERAND.findall(args)
        if current and op_name and (line.lstrip().startswith("ROOT") or current not in comp_name):
            comp_name[current] = op_name

    def resolve(instr: str, depth: int = 0) -> str:
        opcode, op_name = out.get(instr, ("", ""))
        if op_name or depth > 8:
            return op_name
        op_name = comp_name.get(calls.get(instr, ""), "")
        if not op_name:
            names = [resolve(o, depth + 1) for o in operands.get(instr, ())]
            grads = [n for n in names if "transpose(" in n]
            op_name = (grads or [n for n in names if n] or [""])[0]
        out[instr] = (opcode, op_name)
        return op_name

    for instr in list(out):
        resolve(instr)
    return out


def op_times(compiled: Any, call: Callable[[], Any]) -> dict[str, float]:
    """Seconds of op time per stage while ``call()`` (which runs ``compiled`` once) executes."""
    text = compiled.as_text()
    module = re.search(r"HloModule (\S+?),", text)
    module_name = module.group(1) if module else None
    instr = instructions(text)
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            jax.block_until_ready(call())
        files = glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)
        data = ProfileData.from_file(files[0])
    times: dict[str, float] = collections.defaultdict(float)
    for plane in data.planes:
        for line in plane.lines:
            for ev in line.events:
                stats = dict(ev.stats)
                op = stats.get("hlo_op")
                if op is None or (module_name and stats.get("hlo_module") != module_name):
                    continue
                opcode, op_name = instr.get(op, ("", ""))
                if opcode in CONTROL_FLOW:
                    continue
                times[stage_of(op_name)] += ev.duration_ns * 1e-9
    return {s: times.get(s, 0.0) for s in STAGES}
