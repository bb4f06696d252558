"""Publishing a final model on the Hugging Face Hub (`push_to_hub=true hub_model_id=owner/name`).

Everything that can be known before training is checked before training (`check_hub`, called at second 0 of a
run): the id's form, that the hub is not switched off (HF_HUB_OFFLINE), that a token exists (HF_TOKEN or the
token `hf auth login` stored), that the hub answers and accepts it, that it may write, and that it may write in
the id's namespace. A misconfiguration then fails in a second, not after hours of training.

The upload (`push_final`) is one commit of the final folder's files: the model card (README.md), run card,
tokenizer, generation config, and the weights the user chose with `hub_upload`: the merged model, the LoRA
adapter (for `adapter`, its files at the repository root, the way PEFT loads an adapter repository), or both
(the merged model at the root, the adapter in `adapter/`). The token is read by huggingface_hub itself; it is
never put in a config, a log or a file. The endpoint is huggingface_hub's (HF_ENDPOINT for a mirror).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tokensift.config import option
from tokensift.errors import UserError

UPLOADS = ("auto", "merged", "adapter", "both")
HUB_KEYS = ("push_to_hub", "hub_model_id", "hub_private", "hub_upload")


@dataclass
class HubArgs:
    push_to_hub: bool = option(False, "Upload the final model to the Hugging Face Hub when the run ends (checked "
                               "before training: token, network, id, write access). Needs hub_model_id.")
    hub_model_id: str | None = option(None, "Hub repository for push_to_hub: 'name' (your namespace) or "
                                      "'owner/name'; created when missing.")
    hub_private: bool = option(False, "Create the hub repository as private (an existing one keeps its visibility).")
    hub_upload: str = option("auto", "What push_to_hub uploads besides the model card and tokenizer: merged "
                             "(full weights), adapter (the LoRA adapter only), both, or auto (both for LoRA runs, "
                             "else merged).")

    def validate_hub(self, lora: bool | None = None) -> None:
        """Checks without the network. `lora`: whether the run trains LoRA adapters (None: not known here)."""
        if self.hub_upload not in UPLOADS:
            raise UserError(f"hub_upload must be one of {', '.join(UPLOADS)}, got '{self.hub_upload}'")
        if not self.push_to_hub:
            return
        if not self.hub_model_id:
            raise UserError("push_to_hub=true needs hub_model_id=NAME or OWNER/NAME (the repository to upload to)")
        check_repo_id(self.hub_model_id)
        if lora is False and self.hub_upload in ("adapter", "both"):
            raise UserError(f"hub_upload={self.hub_upload} uploads a LoRA adapter, but this run trains all weights "
                            "(lora=false); use hub_upload=merged or auto")


def check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") > 1:
        raise UserError(f"hub_model_id '{repo_id}' is not a repository id: use NAME or OWNER/NAME")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UserError(f"hub_model_id '{repo_id}' is not a valid repository id: {exc}") from None


def hub_api(token: str):
    from huggingface_hub import HfApi

    # Read here, not at import: HF_ENDPOINT may be set after huggingface_hub was imported.
    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)


def check_hub(args: HubArgs) -> None:
    """Before training: everything about push_to_hub that can fail, short of the upload itself."""
    if not getattr(args, "push_to_hub", False):
        return
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import HfHubHTTPError

    from tokensift.models import hub_offline

    args.validate_hub()
    if hub_offline() or constants.is_offline_mode():  # the environment now, or as huggingface_hub read it
        raise UserError("push_to_hub=true, but HF_HUB_OFFLINE is set: the hub cannot be reached from this run; "
                        "unset HF_HUB_OFFLINE or drop push_to_hub (then upload final/ later with `hf upload`)")
    token = get_token()
    if not token:
        raise UserError("push_to_hub=true, but no Hugging Face token was found: run `hf auth login` or set "
                        "HF_TOKEN to a token with write access")
    api = hub_api(token)
    try:
        info = api.whoami()
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise UserError(f"push_to_hub=true, but the hub refused the token (HTTP {status}): log in again with "
                            "`hf auth login` or set HF_TOKEN to a valid token") from None
        raise UserError(f"push_to_hub=true, but the hub at {api.endpoint} answered with an error: "
                        f"{first_line(exc)}") from None
    except Exception as exc:  # connection refused, DNS, timeouts: httpx raises several types
        raise UserError(f"push_to_hub=true, but the hub at {api.endpoint} cannot be reached "
                        f"({type(exc).__name__}: {first_line(exc)}); check the network or drop push_to_hub") from None
    role = ((info.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise UserError("push_to_hub=true, but the Hugging Face token is read-only; create a token with write "
                        "access and log in with it")
    user = info.get("name")
    namespace = args.hub_model_id.split("/")[0] if "/" in args.hub_model_id else user
    allowed = {user, *(org.get("name") for org in info.get("orgs") or [])}
    if namespace not in allowed:
        raise UserError(f"push_to_hub=true, but hub_model_id '{args.hub_model_id}' is in the namespace "
                        f"'{namespace}', where the token's user '{user}' cannot write (its namespaces: "
                        f"{', '.join(sorted(n for n in allowed if n))})")


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def upload_files(folder: Path, choice: str, has_adapter: bool) -> list[tuple[Path, str]]:
    """(local file, path in the repository) for one push: the card and every file a model or adapter needs."""
    if choice == "auto":
        choice = "both" if has_adapter else "merged"
    if choice in ("adapter", "both") and not has_adapter:
        raise UserError(f"hub_upload={choice}, but {folder} holds no LoRA adapter (adapter/)")
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(folder).as_posix()
        in_adapter = relative.startswith("adapter/")
        if choice == "adapter":
            if in_adapter and path.name != "README.md":  # our card, not peft's, is the repository's card
                files.append((path, relative.removeprefix("adapter/")))
            elif not path.name.startswith("model") and path.name != "config.json":
                files.append((path, relative))  # card, run card, tokenizer, generation config
        elif choice == "merged" and in_adapter:
            continue
        else:
            files.append((path, relative))
    return files


def push_final(folder: Path, args: HubArgs, what: str) -> str:
    """Upload `folder` (a final model) to `args.hub_model_id` in one commit; returns the repository's URL.
    `what` names the run in the commit message. A failure keeps the folder and says how to upload it later."""
    from huggingface_hub import CommitOperationAdd, get_token

    folder = Path(folder)
    files = upload_files(folder, args.hub_upload, (folder / "adapter").is_dir())
    api = hub_api(get_token())
    try:
        url = api.create_repo(args.hub_model_id, private=args.hub_private, exist_ok=True, repo_type="model")
        repo_id = getattr(url, "repo_id", None) or args.hub_model_id  # 'name' alone: now 'user/name'
        operations = [CommitOperationAdd(path_in_repo=remote, path_or_fileobj=str(local)) for local, remote in files]
        api.create_commit(repo_id, operations, commit_message=f"tokensift: {what}", repo_type="model")
    except Exception as exc:  # the trained model is safe on disk; say how to finish by hand
        raise UserError(f"the model is saved in {folder}, but the upload to '{args.hub_model_id}' failed "
                        f"({type(exc).__name__}: {first_line(exc)}); upload it later with "
                        f"`hf upload {args.hub_model_id} {folder}`") from None
    print(f"[hub] uploaded {len(files)} files of {folder} to {url}")
    return str(url)
