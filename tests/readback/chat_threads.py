#!/usr/bin/env python3
"""Proof that chat histories upgraded by ckpt-migrate (`upgrade: messages_state`) are
LangGraph threads, with LangGraph's and LangChain's own classes:

    python chat_threads.py --saver sqlite|postgres --target PATH_OR_DSN \
        --source-dsn PG_DSN --table chat_message_history

For every session of the source table, read as LangChain reads it
(`messages_from_dict` of each stored row, in id order), a `MessagesState` graph
compiled with the destination's saver returns the same messages in the same order
from `get_state`; then one thread is continued with `invoke` and a new human message:
the graph sees every earlier message, and the thread keeps them. Prints a JSON
summary; exits 1 on any difference.
"""

import argparse
import json
import sqlite3
import sys
from collections import defaultdict

import psycopg
from langchain_core.messages import AIMessage, HumanMessage, messages_from_dict
from langgraph.graph import END, START, MessagesState, StateGraph


def source_sessions(dsn: str, table: str) -> dict:
    sessions = defaultdict(list)
    with psycopg.connect(dsn) as conn:
        for session, message in conn.execute(f"SELECT session_id::text, message FROM {table} ORDER BY id"):
            stored = message if isinstance(message, dict) else json.loads(message)
            sessions[session].append(stored)
    return {s: messages_from_dict(m) for s, m in sessions.items()}


def graph(saver):
    def reply(state: MessagesState):
        return {"messages": [AIMessage(content=f"seen {len(state['messages'])}", id="ckpt-migrate-reply")]}

    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


def check(app, expected: dict, chain: bool, template: str = "{session_id}") -> dict:
    problems = []
    thread_of = lambda session: template.replace("{session_id}", session)  # noqa: E731
    for session, messages in expected.items():
        config = {"configurable": {"thread_id": thread_of(session)}}
        got = app.get_state(config).values.get("messages", [])
        if [m.model_dump() for m in got] != [m.model_dump() for m in messages]:
            problems.append(f"{session}: get_state has {len(got)} message(s), the history {len(messages)} (or they differ)")
        if chain:
            # One checkpoint per message: the state history shows every turn.
            counts = [len(s.values.get("messages", [])) for s in reversed(list(app.get_state_history(config)))]
            if counts != list(range(1, len(messages) + 1)):
                problems.append(f"{session}: state history holds {counts} message(s) per step")
    session, messages = next(iter(expected.items()))
    config = {"configurable": {"thread_id": thread_of(session)}}
    result = app.invoke({"messages": [HumanMessage(content="and one more thing", id="ckpt-migrate-new")]}, config)
    after = app.get_state(config).values["messages"]
    n = len(messages)
    if result["messages"][-1].content != f"seen {n + 1}":
        problems.append(f"{session}: the graph saw {result['messages'][-1].content!r}, expected 'seen {n + 1}'")
    if [m.model_dump() for m in after[:n]] != [m.model_dump() for m in messages] or len(after) != n + 2:
        problems.append(f"{session}: after invoke the thread has {len(after)} message(s), expected {n + 2} with the old ones first")
    return {"sessions": len(expected), "messages": sum(len(m) for m in expected.values()), "continued": session, "problems": problems}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--saver", choices=["sqlite", "postgres"], required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--source-dsn", required=True)
    ap.add_argument("--table", default="chat_message_history")
    ap.add_argument("--chain", action="store_true", help="one checkpoint per message was written")
    ap.add_argument("--thread-template", default="{session_id}", help="the thread id of each session")
    args = ap.parse_args()
    expected = source_sessions(args.source_dsn, args.table)
    if args.saver == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        summary = check(graph(SqliteSaver(sqlite3.connect(args.target, check_same_thread=False))), expected,
                        args.chain, args.thread_template)
    else:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row

        with psycopg.connect(args.target, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
            summary = check(graph(PostgresSaver(conn)), expected, args.chain, args.thread_template)
    print(json.dumps(summary))
    sys.exit(1 if summary["problems"] else 0)


if __name__ == "__main__":
    main()
