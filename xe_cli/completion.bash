# Bash completion for xe. It asks the server, through xe itself, what exists:
#   xe help --all --minimal          command names
#   xe help <command>                its parameters ("reqd params" / "optional params")
#   xe <class>-list params=uuid --minimal      uuids for uuid= / <class>-uuid=
#   xe <class>-param-list uuid=<u>   field names for param-name=
# Connection options typed on the line (-s -p -u -pw -pwf --nossl ...) are reused.
# Install: source this file, or copy it to /etc/bash_completion.d/xe.

_xe_conn() {
    # Connection options from the current line, for our own xe calls.
    local i w
    _xe_opts=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
            -s|-h|-p|-u|-pw|-pwf|--fingerprint) _xe_opts+=("$w" "${COMP_WORDS[i+1]}"); ((i++)) ;;
            --nossl|--no-verify|--insecure) _xe_opts+=("$w") ;;
            server=*|port=*|username=*|password=*|passwordfile=*|fingerprint=*) _xe_opts+=("$w") ;;
        esac
    done
}

_xe_command_word() {
    # The first word that is neither a connection option nor its value.
    local i w
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
            -s|-h|-p|-u|-pw|-pwf|--fingerprint) ((i++)) ;;
            -*|*=*) ;;
            *) echo "$w"; return ;;
        esac
    done
}

_xe() {
    local cur=${COMP_WORDS[COMP_CWORD]} cmd cls param values uuid
    COMPREPLY=()
    _xe_conn
    cmd=$(_xe_command_word)
    if [[ -z $cmd ]]; then
        values=$(xe "${_xe_opts[@]}" help --all --minimal 2>/dev/null)
        COMPREPLY=($(compgen -W "${values//,/ }" -- "$cur"))
        return
    fi
    case $cmd in
        *-param-*) cls=${cmd%%-param-*} ;;
        *-list) cls=${cmd%-list} ;;
        *) cls=${cmd%-*} ;;
    esac
    if [[ $cur == *=* ]]; then
        param=${cur%%=*}
        cur=${cur#*=}
        case $param in
            uuid) values=$(xe "${_xe_opts[@]}" "$cls-list" params=uuid --minimal 2>/dev/null) ;;
            *-uuid) values=$(xe "${_xe_opts[@]}" "${param%-uuid}-list" params=uuid --minimal 2>/dev/null) ;;
            param-name)
                uuid=$(printf '%s\n' "${COMP_WORDS[@]}" | sed -n 's/^uuid=//p' | head -1)
                [[ -n $uuid ]] && values=$(xe "${_xe_opts[@]}" "$cls-param-list" uuid="$uuid" 2>/dev/null \
                    | sed -n 's/^ *\([^ ]*\) ([ SM]R[OW]).*/\1/p' | tr '\n' ',') ;;
            force|multiple|minimal|all|live|shared|sharable|paused) values="true,false" ;;
        esac
        COMPREPLY=($(compgen -W "${values//,/ }" -- "$cur"))
        COMPREPLY=("${COMPREPLY[@]/#/$param=}")
        return
    fi
    values=$(xe "${_xe_opts[@]}" help "$cmd" 2>/dev/null \
        | sed -n 's/^ *\(reqd\|optional\) params *: //p' | tr -d ' ' | tr ',' '\n' \
        | grep -v '^<' | sed 's/$/=/')
    COMPREPLY=($(compgen -W "$values --minimal --multiple --force" -- "$cur"))
    compopt -o nospace 2>/dev/null
}

complete -F _xe xe
