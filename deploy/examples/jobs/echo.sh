#!/bin/sh
# echo — result = payload, byte for byte. One process: the shell copies stdin with its own
# builtins (no `cat`: a second program start would double the job's cost, and the worker
# benchmark runs thousands of these). `read` takes one byte per system call, so a large payload
# is slow to copy (about 0.4 s for 1 MiB on the development VM); the payloads of this demo are small.
{
    while IFS= read -r line; do
        printf '%s\n' "$line"
    done
    printf '%s' "$line"   # bytes after the last newline (all of a one-line payload)
} > "$JOBGATE_RESULT_FILE"
