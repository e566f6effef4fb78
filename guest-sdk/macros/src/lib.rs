//! The `#[task]` attribute of `wasmpool-guest`. Use it through
//! `wasmpool_guest::task`; this crate is an implementation detail.
//!
//! The expansion is kept tiny: the user's function is left untouched, and one
//! `extern "C"` shim named `wasmpool_task_<name>` hands a closure to
//! `wasmpool_guest::__private::run_task`, where decoding, encoding and error
//! reporting live once for every task.

#![deny(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat, parse_macro_input};

/// Exports a function as a wasmpool task. See `wasmpool_guest::task`.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            Span::call_site(),
            "#[task] takes no arguments; the task is named after the function",
        )
        .into_compile_error()
        .into();
    }
    let func = parse_macro_input!(item as ItemFn);
    match expand(&func) {
        Ok(tokens) => tokens.into(),
        Err(e) => {
            let err = e.into_compile_error();
            quote!(#func #err).into()
        }
    }
}

fn expand(func: &ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let sig = &func.sig;
    let name = &sig.ident;
    if let Some(token) = &sig.asyncness {
        return Err(syn::Error::new_spanned(
            token,
            "a wasmpool task cannot be async",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "a wasmpool task cannot be generic: its input and output types must be concrete",
        ));
    }
    if name == "main" {
        return Err(syn::Error::new_spanned(
            name,
            "`main` cannot be a wasmpool task",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            "a wasmpool task cannot be variadic",
        ));
    }
    let mut types = Vec::new();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(recv) => {
                return Err(syn::Error::new_spanned(
                    recv,
                    "a wasmpool task must be a free function, not a method",
                ));
            }
            FnArg::Typed(pat) => {
                if let Pat::Ident(ident) = &*pat.pat
                    && ident.by_ref.is_some()
                {
                    return Err(syn::Error::new_spanned(
                        ident,
                        "a task parameter cannot be `ref`",
                    ));
                }
                types.push(&*pat.ty);
            }
        }
    }
    let vars: Vec<_> = (0..types.len())
        .map(|i| format_ident!("__arg{}", i))
        .collect();
    // One parameter takes the JSON value itself; zero or several take a tuple
    // (`null` / a JSON array), as docs/abi.md and the SDK docs say.
    let (pattern, ty) = match types.as_slice() {
        [single] => (quote!(#(#vars)*), quote!(#single)),
        _ => (quote!((#(#vars,)*)), quote!((#(#types,)*))),
    };
    let export = format!("wasmpool_task_{name}");
    let shim = format_ident!("__wasmpool_task_{}", name, span = sig.span());
    Ok(quote! {
        #func

        #[doc(hidden)]
        #[unsafe(export_name = #export)]
        pub extern "C" fn #shim() -> i32 {
            #[allow(unused_imports)]
            use ::wasmpool_guest::__private::{ViaResult as _, ViaValue as _};
            ::wasmpool_guest::__private::run_task(|#pattern: #ty| {
                (&&::wasmpool_guest::__private::Wrap::new(#name(#(#vars),*))).__outcome()
            })
        }
    })
}
