#!/usr/bin/env python3
"""Runs an A-Ops deploy task file without A-Ops.

A-Ops' deploy manager reads a task file (tasks/deploy_gala.yml) and, in the
order of its step_list, for every step whose `enable` is true runs

    ansible-playbook -i inventory/<step> playbooks/<step>.yml

from its ansible_handler folder (this folder). A failed step ends the task
unless the step's `continue` is true. This script does the same here, so
that the task can be tried with plain Ansible, and the tests run it:

    ./run_task.py tasks/deploy_gala.yml [ansible-playbook options...]

Options after the task file go to every ansible-playbook run, e.g.
`--vault-password-file FILE` or `-e @my_vars.yml`. Before each step it
prints `run_task: step <name>: <command>`, after it `run_task: step <name>:
ok` or `failed (exit N)`; disabled steps print `skipped`. It exits 0 when
every step it ran succeeded, 1 otherwise (A-Ops itself counts a task whose
failed steps all had `continue: true` as a success), 2 on a bad task file.
Needs Python 3 and PyYAML (both come with Ansible).
"""

import os
import subprocess
import sys

import yaml


def steps(task_file):
    """The (name, enable, continue) of each step, in the file's order."""
    with open(task_file, encoding="utf-8") as f:
        task = yaml.safe_load(f)
    if not isinstance(task, dict) or not isinstance(task.get("step_list"), dict):
        raise ValueError(f"{task_file}: no step_list mapping")
    out = []
    for name, info in task["step_list"].items():
        info = info or {}
        if not isinstance(info, dict):
            raise ValueError(f"{task_file}: step {name}: expected enable/continue keys")
        out.append((str(name), bool(info.get("enable", False)), bool(info.get("continue", False))))
    return out


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    task_file = os.path.abspath(argv[1])
    extra = argv[2:]
    # The folder holding inventory/, playbooks/ and roles/: this script's.
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        plan = steps(task_file)
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"run_task: {e}", file=sys.stderr)
        return 2
    failed = False
    for name, enable, cont in plan:
        if not enable:
            print(f"run_task: step {name}: skipped (enable: false)", flush=True)
            continue
        inventory = os.path.join("inventory", name)
        playbook = os.path.join("playbooks", f"{name}.yml")
        for path in (inventory, playbook):
            if not os.path.exists(os.path.join(here, path)):
                print(f"run_task: step {name}: {path} does not exist", flush=True)
                return 2
        cmd = ["ansible-playbook", "-i", inventory, playbook, *extra]
        print(f"run_task: step {name}: {' '.join(cmd)}", flush=True)
        rc = subprocess.call(cmd, cwd=here)
        if rc == 0:
            print(f"run_task: step {name}: ok", flush=True)
            continue
        failed = True
        print(f"run_task: step {name}: failed (exit {rc})", flush=True)
        if not cont:
            print(f"run_task: stopping: step {name} has continue: false", flush=True)
            return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
