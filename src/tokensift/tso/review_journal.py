"""The review page's journal of human decisions, and the decisions file written from it.

Every decision a reviewer makes on the page (`tokensift tso review --serve`) is one JSON line appended to the
journal, flushed and fsynced before the server answers: an acknowledged decision survives a kill of the server
or a power cut. The journal is never rewritten, only appended to, so two reviewers' decisions on one pair are
both kept. After each append the decisions file (the one `tokensift tso run decisions=FILE` reads) is rewritten
atomically (fsutil.write_text_atomic) from the whole journal; a server that starts again rebuilds it first, so
a kill between the append and the rewrite loses nothing either. A torn last line (the server killed while
writing it) was never acknowledged and is cut off when the journal is opened.

Entries:
    {"seq": 7, "at": "2026-...Z", "reviewer": "ana", "pair_id": "...", "decision": "keep|flip|drop",
     "choice": "a|b|drop", "note": "...", "resolves": false, "request_id": "..."}
    {"seq": 8, "at": ..., "reviewer": "ana", "undo": 7, "request_id": "..."}     # retracts decision 7

The pair's state folds its entries in order, skipping retracted ones: each reviewer's latest decision is their
vote, and a decision made with `resolves: true` first clears every earlier vote on the pair.

Conflict rule (docs/tso.md, "Review in the browser"): when the current votes on a pair differ, the pair is a
conflict. The page shows it with every vote, and the decisions file records `drop` for it (people disagree about
the preference, so it is not trained on either way) with `conflict: true` and the votes, until a reviewer decides
it again on the page; that decision resolves it (it replaces every earlier vote).

A request id (the page sends one per click) makes a retried request idempotent: the same id returns the entry
already recorded instead of recording it twice.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tokensift.errors import UserError
from tokensift.tso.files import write_table
from tokensift.tso.pairs import DECISIONS, read_decisions

DECISION_COLUMNS = ["pair_id", "decision", "review_reason", "round", "conflict", "votes", "note"]
IMPORTED = "decisions-file"  # the reviewer name of decisions found in the decisions file, not in the journal


@dataclass
class PairState:
    votes: dict[str, dict] = field(default_factory=dict)  # reviewer -> their current decision entry

    @property
    def conflict(self) -> bool:
        return len({v["decision"] for v in self.votes.values()}) > 1

    @property
    def decision(self) -> str | None:
        """What the decisions file records: the agreed decision, `drop` for a conflict, None when undecided."""
        if not self.votes:
            return None
        return "drop" if self.conflict else next(iter(self.votes.values()))["decision"]

    def public(self) -> dict:
        votes = sorted(self.votes.values(), key=lambda v: v["seq"])
        return {"decision": self.decision, "conflict": self.conflict,
                "votes": [{k: v.get(k) for k in ("seq", "reviewer", "decision", "choice", "note", "at")} for v in votes]}


def journal_path(decisions_file: Path) -> Path:
    return decisions_file.with_name(decisions_file.stem + ".journal.jsonl")


class DecisionJournal:
    """The journal of one decisions file. `pairs`: pair_id -> {"review_reason", "round"} of the run's reviewed
    pairs (written beside each decision). Thread-safe: one lock orders appends and rewrites."""

    def __init__(self, decisions_file: str | Path, pairs: dict[str, dict]):
        self.decisions_file = Path(decisions_file)
        self.path = journal_path(self.decisions_file)
        self.pairs = pairs
        self.lock = threading.Lock()
        self.entries: list[dict] = []
        self.requests: dict[str, dict] = {}
        self._load()
        self._import_file()
        self.states = self._fold()
        self.write_decisions()

    # ------------------------------------------------------------------ reading
    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        complete, tail = lines[:-1], lines[-1]
        if tail:  # no final newline: the server died writing this line, which was never acknowledged
            with open(self.path, "r+b") as f:
                f.truncate(len(raw) - len(tail))
                f.flush()
                os.fsync(f.fileno())
        for number, line in enumerate(complete, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                raise UserError(f"{self.path}, line {number}: not JSON; the journal of review decisions is written "
                                "only by the review page (restore it from a backup or move it away)") from None
            self._remember(entry)

    def _remember(self, entry: dict) -> None:
        self.entries.append(entry)
        if entry.get("request_id"):
            self.requests[entry["request_id"]] = entry

    def _import_file(self) -> None:
        """Decisions in the decisions file for pairs the journal has never seen (a file made by hand or by
        `tso review` before the page was used) join the journal, so rewriting the file loses none of them.
        For pairs the journal knows, the journal is the record."""
        if not self.decisions_file.exists():
            return
        known = {e.get("pair_id") for e in self.entries}
        for pair_id, decided in read_decisions(self.decisions_file).items():
            if pair_id not in known:
                self._append({"reviewer": IMPORTED, "pair_id": pair_id, "decision": decided.decision,
                              "choice": None, "note": f"row {decided.row} of {self.decisions_file.name}",
                              "resolves": False})

    def _fold(self) -> dict[str, PairState]:
        retracted = {e["undo"] for e in self.entries if "undo" in e}
        states: dict[str, PairState] = {}
        for entry in self.entries:
            if "decision" not in entry or entry["seq"] in retracted:
                continue
            state = states.setdefault(entry["pair_id"], PairState())
            if entry.get("resolves"):
                state.votes.clear()
            state.votes.pop(entry["reviewer"], None)  # re-inserted last: votes keep the order they were cast in
            state.votes[entry["reviewer"]] = entry
        return states

    # ------------------------------------------------------------------ writing
    def _append(self, entry: dict) -> dict:
        """Append one entry durably (caller holds the lock, or is the constructor)."""
        entry = {"seq": len(self.entries) + 1, "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                 **entry}
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        if new:  # the new file's name must survive a crash too
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        self._remember(entry)
        return entry

    def decide(self, reviewer: str, pair_id: str, decision: str, choice: str | None, note: str,
               request_id: str | None) -> dict:
        """Record a decision; returns the entry (the one already recorded for a repeated request id). A decision
        on a pair in conflict resolves it."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
        with self.lock:
            if request_id and request_id in self.requests:
                return self.requests[request_id]
            state = self.states.get(pair_id)
            entry = self._append({"reviewer": reviewer, "pair_id": pair_id, "decision": decision, "choice": choice,
                                  "note": note, "resolves": bool(state and state.conflict),
                                  "request_id": request_id})
            self.states = self._fold()
            self.write_decisions()
            return entry

    def undo(self, reviewer: str, seq: int, request_id: str | None) -> dict:
        """Retract the reviewer's own decision `seq`; returns the undo entry. LookupError: no such decision of
        theirs that still counts."""
        with self.lock:
            if request_id and request_id in self.requests:
                return self.requests[request_id]
            retracted = {e["undo"] for e in self.entries if "undo" in e}
            target = self.entries[seq - 1] if 1 <= seq <= len(self.entries) else None
            if not target or "decision" not in target or target["reviewer"] != reviewer or seq in retracted:
                raise LookupError(f"no decision {seq} by {reviewer} to undo")
            entry = self._append({"reviewer": reviewer, "undo": seq, "pair_id": target["pair_id"],
                                  "request_id": request_id})
            self.states = self._fold()
            self.write_decisions()
            return entry

    def write_decisions(self) -> None:
        """Rewrite the decisions file (JSON Lines, or CSV by its name) from the journal, atomically."""
        rows = []
        for pair_id, state in self.states.items():
            if state.decision is None:
                continue
            votes = sorted(state.votes.values(), key=lambda v: v["seq"])
            where = self.pairs.get(pair_id, {})
            rows.append({"pair_id": pair_id, "decision": state.decision, "review_reason": where.get("review_reason"),
                         "round": where.get("round"), "conflict": state.conflict,
                         "votes": "; ".join(f"{v['reviewer']}={v['decision']}" for v in votes),
                         "note": " | ".join(f"{v['reviewer']}: {v['note']}" for v in votes if v.get("note"))})
        write_table(self.decisions_file, rows, DECISION_COLUMNS)

    def state(self, pair_id: str) -> dict:
        state = self.states.get(pair_id)
        return state.public() if state else PairState().public()

    def summary(self) -> dict:
        decided = [s for s in self.states.values() if s.decision]
        return {"decided": len(decided), "conflicts": sum(s.conflict for s in decided),
                "entries": len(self.entries)}
