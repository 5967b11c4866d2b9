"""The `custos` command (DESIGN.md §9), in rooms.

- `parser`: the command line, and which function runs each command;
- `operator`: commands on a data directory (init, ca, org, keys, serve, stop, policy check);
- `client`: commands that reach a gateway with an identity bundle;
- `offline`: checks that need no gateway (packet verify, audit verify --bundle, audit cosigner-key);
- `formats`: the output formats of `bureau pull --format`, one entry each;
- `output`: errors, exit codes and printing; `outfiles`: owner-only files that may hold PI.

The rooms decide nothing: a check that is a rule lives in a use case
(`gateway/core/usecases`) or in `vault`, and a command only calls it. `main`
is the entry point (`gateway.cli:main`); it turns every failure, a usage
error included, into `error: CODE: message` (with --json also a document on
stdout) and the exit status `output.exit_status` gives it, never a traceback.
"""

from __future__ import annotations

import os
import sys

import gateway.transport  # noqa: F401 - first: gRPC's TLS policy, before main imports the client (and grpc)
from gateway import logs
from gateway.core.errors import Code, CustosError, PolicyError

from .client import DEFAULT_SAMPLE
from .operator import serve_until_signalled
from .output import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, USAGE, CliError, ImportBroken, fail
from .parser import UsageError, build_parser

__all__ = ["DEFAULT_SAMPLE", "build_parser", "main", "serve_until_signalled"]


def main(argv: list[str] | None = None) -> int:
    logs.configure(logs.chosen() or "text")  # `serve --log-format` configures again
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    parser.json_requested = "--json" in argv
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        print(err.usage, end="", file=sys.stderr)
        return fail(None, USAGE, err.message, json_out=parser.json_requested)
    from custos_client import CustosClientError

    try:
        args.fn(args)
    except PolicyError as err:
        return fail(args, err.code, err.detail)
    except CustosError as err:
        return fail(args, err.code, err.message)
    except CustosClientError as err:
        seq = getattr(err, "seq", None)
        return fail(args, err.code, err.message, {"seq": seq} if seq is not None else None, status=err.status)
    except ImportBroken as err:
        return fail(args, err.code, err.message, {"stored": err.stored}, status=err.status)
    except CliError as err:
        return fail(args, err.code, err.message, status=err.status)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`custos ... | head`): nothing more can be written, and that is no error of ours.
        # Point stdout at /dev/null so the interpreter's own final flush does not fail as well.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - never a traceback; never the exception text (it may hold a value)
        return fail(args, Code.INTERNAL, f"unexpected {type(exc).__name__}")
    return 0
