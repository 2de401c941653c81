# bash completion for nixboot and nixboot-try
_nixboot() {
  local cur prev verb i
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  local globals="--esp --profile --efivars --state --bootloader --config --json --verbose --quiet --help --version"
  local verbs="install try confirm status list history check checks mark-good mark-bad rollback deploy"
  case $prev in
    --esp|--efivars|--state) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    --profile|--config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --bootloader) COMPREPLY=($(compgen -W "systemd-boot grub" -- "$cur")); return ;;
    --check) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --tries|--keep|--confirm-timeout|--reason|--push|--generation|--check-timeout|--ssh-options) return ;;
    --connect-timeout|--boot-timeout|--settle-timeout|--command-timeout|--push-timeout) return ;;
    --poll-interval|--parallel) return ;;
  esac
  verb=
  if [[ ${COMP_WORDS[0]##*/} == nixboot-try ]]; then verb=try; fi
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --esp|--profile|--efivars|--state|--bootloader|--config) ((i++)) ;;
      -*) ;;
      *) [[ -z $verb ]] && verb=${COMP_WORDS[i]} ;;
    esac
  done
  if [[ -z $verb ]]; then
    COMPREPLY=($(compgen -W "$globals $verbs" -- "$cur")); return
  fi
  local opts="--help"
  case $verb in
    install) opts+=" --keep --tries" ;;
    try) opts+=" --tries --reboot --live --confirm-timeout --accept-risk" ;;
    confirm) opts+=" --run" ;;
    live-revert) opts+=" --reason --run" ;;
    mark-good|mark-bad) opts+=" --reason --run" ;;
    rollback) opts+=" --reason --run" ;;
    deploy) opts+=" --config --push --generation --reboot --live --confirm-timeout --check --check-timeout
                   --ssh-options --connect-timeout --boot-timeout --settle-timeout --command-timeout
                   --push-timeout --poll-interval --parallel" ;;
  esac
  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur")); return; fi
  case $verb in
    try|mark-good|mark-bad)
      local gens=$(nixboot list --json 2>/dev/null | grep -o '"generation":[0-9]*' | cut -d: -f2 | sort -un)
      COMPREPLY=($(compgen -W "$gens" -- "$cur")) ;;
    deploy) COMPREPLY=($(compgen -A hostname -- "$cur")) ;;
  esac
}
complete -F _nixboot nixboot nixboot-try
