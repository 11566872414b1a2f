# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cdcctl_global_optspecs
    string join \n profile= config= o/output= v/verbose q/quiet no-color y/yes h/help V/version
end

function __fish_cdcctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cdcctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_cdcctl_using_subcommand
    set -l cmd (__fish_cdcctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c cdcctl -n "__fish_cdcctl_needs_command" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_needs_command" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_needs_command" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_needs_command" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -f -a "setup-source" -d 'Check and prepare Postgres for CDC: wal_level, slots, privileges, publication, slot'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -f -a "generate-data" -d 'Fill Postgres with realistic rows and drive a stream of changes'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -f -a "config" -d 'Show every effective setting and where it came from (secrets as ****)'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -f -a "completions" -d 'Print a shell completion script to stdout'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -l tables -d 'Tables to capture, comma separated: `users,commerce.products,"My Table"`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -l schemas -d 'Capture every table of these schemas, comma separated' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -l publication -d 'Publication to create or extend' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -l slot -d 'Logical replication slot (pgoutput) to create; none unless given' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -l replica-identity -d 'Set the replica identity of every chosen table (unchanged unless given)' -r -f -a "full\t'Old values of every column in update/delete events'
default\t'Old values of the primary key only'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -l postgres-url -d 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -l demo -d 'Create the demo schema (the seed pipelines\' four tables) and use its tables'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -l apply-system -d 'Also run `ALTER SYSTEM` for wal_level, max_replication_slots and max_wal_senders'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -l dry-run -d 'Print the SQL that would run, and change nothing'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -l teardown -d 'Drop the slot (`--slot`) and the publication instead, reporting the WAL the slot retained'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand setup-source" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -l table -d 'Tables to fill instead of the demo tables: `users,shop.orders` (repeatable)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -l rows -d 'Bulk-load N rows into each table with COPY, parents before children' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -l events -d 'Then make N changes (inserts, updates, deletes as `--mix` says)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -l duration -d 'Make changes for this long instead of a count: `30s`, `5m`, `1h`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -l rate -d 'Changes per second; 0 makes them as fast as possible' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -l mix -d 'Relative weights of inserts, updates and deletes among the changes' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -l tx-size -d 'Changes per transaction' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -l seed -d 'Seed of the generator: the same seed on the same starting data gives the same rows' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -l postgres-url -d 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -l large-text -d 'Put values over 8 KB in one text column per table, so that TOAST is exercised'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand generate-data" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l postgres-url -d 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l brokers -d 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l topic-prefix -d 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l snowflake-account -d 'Snowflake account identifier (`orgname-account`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l snowflake-url -d 'Snowflake endpoint URL, overriding the one derived from the account' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l duckdb-path -d 'DuckDB database file' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand completions" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand completions" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand completions" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand completions" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand completions" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand completions" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand completions" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand completions" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data config completions help" -f -a "setup-source" -d 'Check and prepare Postgres for CDC: wal_level, slots, privileges, publication, slot'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data config completions help" -f -a "generate-data" -d 'Fill Postgres with realistic rows and drive a stream of changes'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data config completions help" -f -a "config" -d 'Show every effective setting and where it came from (secrets as ****)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data config completions help" -f -a "completions" -d 'Print a shell completion script to stdout'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data config completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
