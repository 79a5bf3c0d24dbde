#!/usr/bin/env python3
"""Benchmark worker: reads the task to EOF, answers success, exits 0. Nothing else.

Used by bench/send_overhead.sh to measure interpreter start-up plus wh's own cost, with no
task processing (no json/logging imports) in the way.
"""
import sys

sys.stdin.buffer.read()
sys.stdout.write('{"success": true, "result": {}}\n')
sys.exit(0)
