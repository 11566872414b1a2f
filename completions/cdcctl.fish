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
complete -c cdcctl -n "__fish_cdcctl_needs_command" -f -a "create-connector" -d 'Apply and manage Debezium connectors on Kafka Connect'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -f -a "connector" -d 'Apply and manage Debezium connectors on Kafka Connect'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -f -a "tail" -d 'Read CDC topics decoded: one line per change, or JSON, or the raw messages'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -f -a "load" -d 'Load CDC topics into the warehouse, keeping each table equal to its source table'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -f -a "replay-dlq" -d 'Inspect the dead-letter topic of `load` and replay its messages after a fix'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -f -a "health" -d 'Is the pipeline healthy? One row per check, from Postgres to the warehouse'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -f -a "verify" -d 'Is the warehouse equal to the source? Row counts, checksums and, with --diff, the keys'
complete -c cdcctl -n "__fish_cdcctl_needs_command" -f -a "scd2" -d 'Keep a Type 2 history (valid_from/valid_to/is_current) from the changes `load --history` kept'
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
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l name -d 'Connector name [default: `connect.connector`, i.e. `cdcctl`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l tables -d 'Tables to capture, comma separated: `users,commerce.products,"My Table"`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l slot -d 'Replication slot [default: the connector\'s current one, else `cdcctl_<name>`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l publication -d 'Publication [default: the connector\'s current one, else see below]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l topic-prefix -d 'Topic prefix: topics are `<PREFIX>.<schema>.<table>` [default: `kafka.topic_prefix`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l snapshot-mode -d 'What the connector snapshots when it starts [default: initial]' -r -f -a "initial\t'Snapshot the tables once, then stream changes; a restart resumes without a snapshot'
always\t'Snapshot on every start, then stream changes'
initial_only\t'Snapshot once, then stop: no streaming'
no_data\t'No snapshot: stream changes from now on'
when_needed\t'Snapshot when there are no offsets, or the slot no longer has what they point at'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l decimal-handling -d 'How numeric and decimal columns are encoded [default: precise]' -r -f -a "precise\t'Exact: Connect `Decimal` (base64 unscaled value and scale)'
string\t'Exact, as a JSON string'
double\t'A JSON number (a double: may lose precision)'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l heartbeat -d 'Heartbeat interval, so the slot advances while the tables are idle; 0 turns it off [default: 10s]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l database-hostname -d 'Postgres host as the Connect worker reaches it [default: `postgres.host`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l database-port -d 'Postgres port as the Connect worker reaches it [default: `postgres.port`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l set -d 'Set any connector key, overriding everything else: `snapshot.mode=no_data` (repeatable)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l from-file -d 'Start from this connector config: Connect JSON (`{"name", "config"}` or a flat map) or TOML (flat keys, or `name` and a `[config]` table)' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l timeout -d 'Longest wait with `--wait`; exit 1 when it passes' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l postgres-url -d 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l no-schemas -d 'Plain JSON messages without the Connect schema (the loader needs the schema)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l dry-run -d 'Validate, print the final config (secrets as ****) and the diff; change nothing'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l wait -d 'Wait until the connector and every task reach the new state (default on a terminal)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l no-wait -d 'Return as soon as the worker accepted the change'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "list" -d 'List the worker\'s connectors: state, tasks, topic prefix, slot and tables'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "status" -d 'Show a connector\'s state and each task\'s; exit 1 unless all are RUNNING'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "restart" -d 'Restart the connector\'s failed tasks (`--all`: the connector and every task)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "pause" -d 'Pause the connector: it stops reading, and its slot retains WAL meanwhile'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "resume" -d 'Resume a paused or stopped connector'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "delete" -d 'Delete the connector; `--drop-slot` also drops its replication slot'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from list" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from list" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from list" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from list" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from list" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from status" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from status" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from status" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from status" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from status" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from status" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -l timeout -d 'Longest wait with `--wait`; exit 1 when it passes' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -l all -d 'Restart the connector and every task, not only the failed ones'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -l wait -d 'Wait until the connector and every task reach the new state (default on a terminal)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -l no-wait -d 'Return as soon as the worker accepted the change'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from restart" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from pause" -l timeout -d 'Longest wait with `--wait`; exit 1 when it passes' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from pause" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from pause" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from pause" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from pause" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from pause" -l wait -d 'Wait until the connector and every task reach the new state (default on a terminal)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from pause" -l no-wait -d 'Return as soon as the worker accepted the change'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from pause" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from pause" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from pause" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from pause" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from pause" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from pause" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from resume" -l timeout -d 'Longest wait with `--wait`; exit 1 when it passes' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from resume" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from resume" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from resume" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from resume" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from resume" -l wait -d 'Wait until the connector and every task reach the new state (default on a terminal)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from resume" -l no-wait -d 'Return as soon as the worker accepted the change'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from resume" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from resume" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from resume" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from resume" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from resume" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from delete" -l postgres-url -d 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from delete" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from delete" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from delete" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from delete" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from delete" -l drop-slot -d 'Also drop the replication slot (after resetting the offsets and deleting the connector)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from delete" -l drop-publication -d 'Also drop the publication, unless another connector on the worker uses it'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from delete" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from delete" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the worker\'s connectors: state, tasks, topic prefix, slot and tables'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show a connector\'s state and each task\'s; exit 1 unless all are RUNNING'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from help" -f -a "restart" -d 'Restart the connector\'s failed tasks (`--all`: the connector and every task)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from help" -f -a "pause" -d 'Pause the connector: it stops reading, and its slot retains WAL meanwhile'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from help" -f -a "resume" -d 'Resume a paused or stopped connector'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete the connector; `--drop-slot` also drops its replication slot'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand create-connector; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l name -d 'Connector name [default: `connect.connector`, i.e. `cdcctl`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l tables -d 'Tables to capture, comma separated: `users,commerce.products,"My Table"`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l slot -d 'Replication slot [default: the connector\'s current one, else `cdcctl_<name>`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l publication -d 'Publication [default: the connector\'s current one, else see below]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l topic-prefix -d 'Topic prefix: topics are `<PREFIX>.<schema>.<table>` [default: `kafka.topic_prefix`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l snapshot-mode -d 'What the connector snapshots when it starts [default: initial]' -r -f -a "initial\t'Snapshot the tables once, then stream changes; a restart resumes without a snapshot'
always\t'Snapshot on every start, then stream changes'
initial_only\t'Snapshot once, then stop: no streaming'
no_data\t'No snapshot: stream changes from now on'
when_needed\t'Snapshot when there are no offsets, or the slot no longer has what they point at'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l decimal-handling -d 'How numeric and decimal columns are encoded [default: precise]' -r -f -a "precise\t'Exact: Connect `Decimal` (base64 unscaled value and scale)'
string\t'Exact, as a JSON string'
double\t'A JSON number (a double: may lose precision)'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l heartbeat -d 'Heartbeat interval, so the slot advances while the tables are idle; 0 turns it off [default: 10s]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l database-hostname -d 'Postgres host as the Connect worker reaches it [default: `postgres.host`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l database-port -d 'Postgres port as the Connect worker reaches it [default: `postgres.port`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l set -d 'Set any connector key, overriding everything else: `snapshot.mode=no_data` (repeatable)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l from-file -d 'Start from this connector config: Connect JSON (`{"name", "config"}` or a flat map) or TOML (flat keys, or `name` and a `[config]` table)' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l timeout -d 'Longest wait with `--wait`; exit 1 when it passes' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l postgres-url -d 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l no-schemas -d 'Plain JSON messages without the Connect schema (the loader needs the schema)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l dry-run -d 'Validate, print the final config (secrets as ****) and the diff; change nothing'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l wait -d 'Wait until the connector and every task reach the new state (default on a terminal)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l no-wait -d 'Return as soon as the worker accepted the change'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "list" -d 'List the worker\'s connectors: state, tasks, topic prefix, slot and tables'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "status" -d 'Show a connector\'s state and each task\'s; exit 1 unless all are RUNNING'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "restart" -d 'Restart the connector\'s failed tasks (`--all`: the connector and every task)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "pause" -d 'Pause the connector: it stops reading, and its slot retains WAL meanwhile'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "resume" -d 'Resume a paused or stopped connector'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "delete" -d 'Delete the connector; `--drop-slot` also drops its replication slot'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and not __fish_seen_subcommand_from list status restart pause resume delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from list" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from list" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from list" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from list" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from list" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from status" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from status" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from status" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from status" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from status" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from status" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -l timeout -d 'Longest wait with `--wait`; exit 1 when it passes' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -l all -d 'Restart the connector and every task, not only the failed ones'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -l wait -d 'Wait until the connector and every task reach the new state (default on a terminal)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -l no-wait -d 'Return as soon as the worker accepted the change'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from restart" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from pause" -l timeout -d 'Longest wait with `--wait`; exit 1 when it passes' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from pause" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from pause" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from pause" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from pause" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from pause" -l wait -d 'Wait until the connector and every task reach the new state (default on a terminal)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from pause" -l no-wait -d 'Return as soon as the worker accepted the change'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from pause" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from pause" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from pause" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from pause" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from pause" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from pause" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from resume" -l timeout -d 'Longest wait with `--wait`; exit 1 when it passes' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from resume" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from resume" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from resume" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from resume" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from resume" -l wait -d 'Wait until the connector and every task reach the new state (default on a terminal)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from resume" -l no-wait -d 'Return as soon as the worker accepted the change'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from resume" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from resume" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from resume" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from resume" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from resume" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from delete" -l postgres-url -d 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from delete" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from delete" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from delete" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from delete" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from delete" -l drop-slot -d 'Also drop the replication slot (after resetting the offsets and deleting the connector)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from delete" -l drop-publication -d 'Also drop the publication, unless another connector on the worker uses it'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from delete" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from delete" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the worker\'s connectors: state, tasks, topic prefix, slot and tables'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show a connector\'s state and each task\'s; exit 1 unless all are RUNNING'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from help" -f -a "restart" -d 'Restart the connector\'s failed tasks (`--all`: the connector and every task)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from help" -f -a "pause" -d 'Pause the connector: it stops reading, and its slot retains WAL meanwhile'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from help" -f -a "resume" -d 'Resume a paused or stopped connector'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete the connector; `--drop-slot` also drops its replication slot'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand connector; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -l topic -d 'Read this topic (repeatable)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -l pattern -d 'Read every topic whose whole name matches this regular expression' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -l from -d 'Where to start: `beginning`, `end`, `offset:N`, `offset:-N` (last N of each partition), `time:RFC3339` or a relative time such as `-5m`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -s n -l count -d 'Stop after printing this many events' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -l op -d 'Only these operations, comma separated: c, r, u, d, t, m (or create, read, update, delete, truncate, message)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -l key -d 'Only events whose key has this value: `id=42` (repeatable; `42` alone for one-column keys)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -l where -d 'Only events whose row has this value: `status=paid` (the after image, or the before image of a delete; repeatable, all must match)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -l format -d 'How each event is printed [default: `pretty`, or `json` with `--output json`]' -r -f -a "pretty\t'One line per event: time, op, table, key, changed columns, lag'
json\t'One decoded JSON object per line (op, table, key, before, after, source, kafka)'
raw\t'The message value as stored, one per line'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -l brokers -d 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -l topic-prefix -d 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -s f -l follow -d 'Keep reading new changes until interrupted (default on a terminal)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -s e -l until-end -d 'Stop once every partition is read up to where it ended at start (default in a pipe)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -l tombstones -d 'Also print tombstones (the null-value message Kafka compaction uses after a delete)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand tail" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l topic -d 'Load this topic (repeatable)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l pattern -d 'Load every topic whose whole name matches this regular expression' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l sink -d 'Where the rows go: duckdb or snowflake [default: `load.sink`, duckdb]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l group -d 'Kafka consumer group whose committed offsets say where to resume [default: `load.group`, cdcctl-load]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l from -d 'Where a partition without committed offset starts' -r -f -a "beginning\t'The oldest retained message (the whole history, snapshot included)'
end\t'Only changes produced after the loader starts'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l batch-size -d 'Flush a micro-batch at this many events [default: `load.batch_size`, 20000]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l flush-interval -d 'Flush a partial micro-batch after this long, e.g. `500ms` [default: `load.flush_interval`, 1s]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l linger -d 'Once the topics have been read to their end, flush after the batch is this old' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l commit-interval -d 'Commit the offsets of loaded batches this often (`0s`: after every batch)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l dlq-topic -d 'Dead-letter topic for messages that cannot be loaded [default: `<prefix>.dlq`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l retry-base -d 'First wait before retrying a batch the warehouse could not take (unreachable, timed out, throttled); doubled with jitter up to --retry-cap' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l retry-cap -d 'Longest wait between two retries of a batch' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l retry-max-elapsed -d 'Give up (exit 3) when the warehouse has been unavailable this long' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l breaker-threshold -d 'Consecutive failures that open the warehouse circuit breaker (no attempts while open)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l breaker-open -d 'How long the breaker stays open before one probe attempt' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l target-schema -d 'Put every target table in this schema (default: the source table\'s schema)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l table-map -d 'Load a source table into another target: `public.users=app_users`, `commerce.users=shop.customers` (repeatable)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l memory-limit -d 'DuckDB\'s memory limit (`SET memory_limit`); it spills to disk beyond it' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l metrics-file -d 'Write the metrics as JSON to this file, periodically and at exit' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l metrics-interval -d 'How often the metrics file is rewritten' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l metrics-addr -d 'Serve the metrics in Prometheus text format on this address, e.g. `127.0.0.1:9187`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l brokers -d 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l topic-prefix -d 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l duckdb-path -l duckdb -d 'DuckDB database file' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l no-dlq -d 'Stop at the first message that cannot be loaded instead (exit 1, nothing committed past it)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l until-caught-up -d 'Exit 0 once every partition is loaded up to where it ended at start (CI, Makefiles)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l soft-delete -d 'Keep deleted rows, flagged `_cdc_deleted = true`, instead of removing them'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l primary-key -d 'Declare a PRIMARY KEY on the key columns of tables it creates (DuckDB; slower MERGE)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l history -d 'Also append every change to `<table>__changes` (what `cdcctl scd2` builds history from)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand load" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -l dlq-topic -d 'The dead-letter topic [default: `<prefix>.dlq`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -l group -d 'Consumer group that remembers what was replayed' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -l table -d 'Only dead letters of this source table: `users`, `commerce.products`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -l error-class -d 'Only dead letters of this error class: `invalid_json`, `unknown_op`, `type_mismatch`, ...' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -l since -d 'Only dead letters that first failed at or after this time (RFC 3339, or `-2h`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -l offset -d 'Only the dead letter at this offset of the dead-letter topic' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -l brokers -d 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -l topic-prefix -d 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -l duckdb-path -l duckdb -d 'DuckDB database file' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -l all -d 'Include dead letters already replayed (list and show)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -f -a "list" -d 'Dead letters grouped by error class and table, with counts and first/last failure'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -f -a "show" -d 'Dead letters one by one: where they came from, their headers, why they fail now'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -f -a "replay" -d 'Replay the selected dead letters that now decode; put the others back, counted'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and not __fish_seen_subcommand_from list show replay help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -l dlq-topic -d 'The dead-letter topic [default: `<prefix>.dlq`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -l group -d 'Consumer group that remembers what was replayed' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -l table -d 'Only dead letters of this source table: `users`, `commerce.products`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -l error-class -d 'Only dead letters of this error class: `invalid_json`, `unknown_op`, `type_mismatch`, ...' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -l since -d 'Only dead letters that first failed at or after this time (RFC 3339, or `-2h`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -l offset -d 'Only the dead letter at this offset of the dead-letter topic' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -l all -d 'Include dead letters already replayed (list and show)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -l limit -d 'Show at most this many' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -l dlq-topic -d 'The dead-letter topic [default: `<prefix>.dlq`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -l group -d 'Consumer group that remembers what was replayed' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -l table -d 'Only dead letters of this source table: `users`, `commerce.products`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -l error-class -d 'Only dead letters of this error class: `invalid_json`, `unknown_op`, `type_mismatch`, ...' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -l since -d 'Only dead letters that first failed at or after this time (RFC 3339, or `-2h`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -l offset -d 'Only the dead letter at this offset of the dead-letter topic' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -l all -d 'Include dead letters already replayed (list and show)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l sink -d 'Where the rows go when applied: duckdb or snowflake [default: `load.sink`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l target-schema -d 'Target schema, as the loader\'s `--target-schema`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l table-map -d 'Source table → target table, as the loader\'s `--table-map` (repeatable)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l dlq-topic -d 'The dead-letter topic [default: `<prefix>.dlq`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l group -d 'Consumer group that remembers what was replayed' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l table -d 'Only dead letters of this source table: `users`, `commerce.products`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l error-class -d 'Only dead letters of this error class: `invalid_json`, `unknown_op`, `type_mismatch`, ...' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l since -d 'Only dead letters that first failed at or after this time (RFC 3339, or `-2h`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l offset -d 'Only the dead letter at this offset of the dead-letter topic' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l to-source-topic -d 'Send them to their original topic instead of applying them to the warehouse'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l dry-run -d 'Show what would be replayed and whether it would succeed; change nothing'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l soft-delete -d 'As the loader\'s `--soft-delete`: deletes flag rows instead of removing them'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l history -d 'As the loader\'s `--history`: the replayed changes are added to `<table>__changes` too (a later `cdcctl scd2` puts them in their place in the history)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l all -d 'Include dead letters already replayed (list and show)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from replay" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from help" -f -a "list" -d 'Dead letters grouped by error class and table, with counts and first/last failure'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from help" -f -a "show" -d 'Dead letters one by one: where they came from, their headers, why they fail now'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from help" -f -a "replay" -d 'Replay the selected dead letters that now decode; put the others back, counted'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand replay-dlq; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l watch -d 'Check again every INTERVAL until Ctrl-C (redrawn on a terminal; JSON lines with -o json)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l slot-warn -d 'WAL a replication slot may retain before a warning [default: `health.slot_warn`, 1GB]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l slot-fail -d 'WAL a replication slot may retain before the check fails [default: `health.slot_fail`, 10GB]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l lag-warn -d 'Messages the loader group may be behind before a warning [default: `health.lag_warn`, 10000]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l lag-fail -d 'Messages the loader group may be behind before the check fails [default: `health.lag_fail`, 1000000]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l freshness-warn -d 'Time since a table\'s last load before a warning [default: `health.freshness_warn`, 15m]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l freshness-fail -d 'Time since a table\'s last load before the check fails [default: `health.freshness_fail`, 6h]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l loader-metrics -d 'A running loader\'s --metrics-file: adds its warehouse circuit breaker and liveness' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l timeout -d 'How long each layer\'s checks may take' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l sink -d 'Where the loader writes: duckdb or snowflake [default: `load.sink`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l group -d 'The loader\'s consumer group, for its lag [default: `load.group`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l postgres-url -d 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l brokers -d 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l topic-prefix -d 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l snowflake-account -d 'Snowflake account identifier (`orgname-account`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l snowflake-url -d 'Snowflake endpoint URL, overriding the one derived from the account' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l duckdb-path -l duckdb -d 'DuckDB database file' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l strict -d 'Warnings fail too (exit 1)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand health" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l limit -d 'With --diff, at most this many keys of each kind per table' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l sink -d 'Where the loader writes: duckdb or snowflake [default: `load.sink`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l group -d 'The loader\'s consumer group, for its lag [default: `load.group`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l postgres-url -d 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l brokers -d 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l topic-prefix -d 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l snowflake-account -d 'Snowflake account identifier (`orgname-account`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l snowflake-url -d 'Snowflake endpoint URL, overriding the one derived from the account' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l duckdb-path -l duckdb -d 'DuckDB database file' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l diff -d 'List the keys that are missing, extra or different, with the differing columns'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand verify" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l table -d 'The loaded table: `users` (schema `public`) or `schema.table`, as `load` named it' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l key -d 'Key columns, comma separated [default: the key of the previous run]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l track -d 'Columns whose changes make a new version, comma separated [default: every non-key column]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l history-table -d 'The history table [default: `<table>_history`, in the table\'s schema]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l as-of -d 'Print the table as it was at this instant (RFC 3339, or `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC) instead of updating the history' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l limit -d 'With --check, list at most this many violations per rule' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l sink -d 'Where the loader writes: duckdb or snowflake [default: `load.sink`]' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l snowflake-account -d 'Snowflake account identifier (`orgname-account`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l snowflake-url -d 'Snowflake endpoint URL, overriding the one derived from the account' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l duckdb-path -l duckdb -d 'DuckDB database file' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l profile -d 'Profile of cdcctl.toml to use (`[profiles.NAME]`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l config -d 'Configuration file to read instead of the searched ones' -r -F
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -s o -l output -d 'Output format: tables for people, or JSON for scripts' -r -f -a "text\t'Human-readable tables and messages'
json\t'Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr'"
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l keep-deleted -d 'A delete also adds a current `is_deleted` version (the key\'s last values), instead of only closing the version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l rebuild -d 'Recompute the whole history from the changes table (needed to change --key, --track or --keep-deleted)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l check -d 'Validate the history instead of updating it: one current row per live key, no overlapping or gapped intervals, valid_from < valid_to, versions 1, 2, 3… (exit 1 on any violation)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -s v -l verbose -d 'Log more to stderr (-v info, -vv debug, -vvv trace)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -s q -l quiet -d 'Print only data and errors: no progress, no warnings'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -l no-color -d 'Never use colour (also when `NO_COLOR` is set)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -s y -l yes -d 'Answer yes to every confirmation prompt'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand scd2" -s V -l version -d 'Print version'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l postgres-url -d 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l brokers -d 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l topic-prefix -d 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l connect-url -d 'Kafka Connect REST URL' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l snowflake-account -d 'Snowflake account identifier (`orgname-account`)' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l snowflake-url -d 'Snowflake endpoint URL, overriding the one derived from the account' -r
complete -c cdcctl -n "__fish_cdcctl_using_subcommand config" -l duckdb-path -l duckdb -d 'DuckDB database file' -r
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
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data create-connector tail load replay-dlq health verify scd2 config completions help" -f -a "setup-source" -d 'Check and prepare Postgres for CDC: wal_level, slots, privileges, publication, slot'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data create-connector tail load replay-dlq health verify scd2 config completions help" -f -a "generate-data" -d 'Fill Postgres with realistic rows and drive a stream of changes'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data create-connector tail load replay-dlq health verify scd2 config completions help" -f -a "create-connector" -d 'Apply and manage Debezium connectors on Kafka Connect'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data create-connector tail load replay-dlq health verify scd2 config completions help" -f -a "tail" -d 'Read CDC topics decoded: one line per change, or JSON, or the raw messages'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data create-connector tail load replay-dlq health verify scd2 config completions help" -f -a "load" -d 'Load CDC topics into the warehouse, keeping each table equal to its source table'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data create-connector tail load replay-dlq health verify scd2 config completions help" -f -a "replay-dlq" -d 'Inspect the dead-letter topic of `load` and replay its messages after a fix'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data create-connector tail load replay-dlq health verify scd2 config completions help" -f -a "health" -d 'Is the pipeline healthy? One row per check, from Postgres to the warehouse'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data create-connector tail load replay-dlq health verify scd2 config completions help" -f -a "verify" -d 'Is the warehouse equal to the source? Row counts, checksums and, with --diff, the keys'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data create-connector tail load replay-dlq health verify scd2 config completions help" -f -a "scd2" -d 'Keep a Type 2 history (valid_from/valid_to/is_current) from the changes `load --history` kept'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data create-connector tail load replay-dlq health verify scd2 config completions help" -f -a "config" -d 'Show every effective setting and where it came from (secrets as ****)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data create-connector tail load replay-dlq health verify scd2 config completions help" -f -a "completions" -d 'Print a shell completion script to stdout'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and not __fish_seen_subcommand_from setup-source generate-data create-connector tail load replay-dlq health verify scd2 config completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and __fish_seen_subcommand_from create-connector" -f -a "list" -d 'List the worker\'s connectors: state, tasks, topic prefix, slot and tables'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and __fish_seen_subcommand_from create-connector" -f -a "status" -d 'Show a connector\'s state and each task\'s; exit 1 unless all are RUNNING'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and __fish_seen_subcommand_from create-connector" -f -a "restart" -d 'Restart the connector\'s failed tasks (`--all`: the connector and every task)'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and __fish_seen_subcommand_from create-connector" -f -a "pause" -d 'Pause the connector: it stops reading, and its slot retains WAL meanwhile'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and __fish_seen_subcommand_from create-connector" -f -a "resume" -d 'Resume a paused or stopped connector'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and __fish_seen_subcommand_from create-connector" -f -a "delete" -d 'Delete the connector; `--drop-slot` also drops its replication slot'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and __fish_seen_subcommand_from replay-dlq" -f -a "list" -d 'Dead letters grouped by error class and table, with counts and first/last failure'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and __fish_seen_subcommand_from replay-dlq" -f -a "show" -d 'Dead letters one by one: where they came from, their headers, why they fail now'
complete -c cdcctl -n "__fish_cdcctl_using_subcommand help; and __fish_seen_subcommand_from replay-dlq" -f -a "replay" -d 'Replay the selected dead letters that now decode; put the others back, counted'
