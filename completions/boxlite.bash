_boxlite_completion() {
    local IFS=$'\n'
    local response

    local line="${COMP_LINE:0:$COMP_POINT}" words cword cur colon=""
    IFS=$' \t' read -ra words <<< "$line"
    [[ -z $line || $line == *[[:space:]] ]] && words+=("")
    cword=$(( ${#words[@]} - 1 ))
    cur="${words[cword]}" inc="${words[cword]}"
    [[ $cur == -*=* ]] && inc="${cur#*=}"  # (--opt=VALUE: boxlite completes VALUE)
    [[ $inc == *[:=]* ]] && colon="${inc%"${inc##*[:=]}"}"

    response=$(env COMP_WORDS="${words[*]}" COMP_CWORD=$cword _BOXLITE_COMPLETE=bash_complete $1)

    for completion in $response; do
        IFS=',' read type value <<< "$completion"

        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            COMPREPLY+=("${value#"$colon"}")
            [[ $value == *[:=/,] ]] && compopt -o nospace
        fi
    done

    return 0
}

_boxlite_completion_setup() {
    complete -o nosort -F _boxlite_completion boxlite
}

_boxlite_completion_setup;
